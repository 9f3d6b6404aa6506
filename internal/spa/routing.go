package spa

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rule names, recorded on every decision. Persisted: never rename.
const (
	RuleCriteriaToReside = "criteria-to-reside"
	RuleEndOfLife        = "end-of-life"
	RuleInfectionOverlay = "infection-overlay"
	RuleHomeFirst        = "home-first"
	RuleUrgentResponse   = "urgent-community-response"
	RuleStepDown         = "step-down"
	RuleCareHome         = "care-home"
	RuleHold             = "hold"
	RuleWardLed          = "ward-led"
	RuleProviderChoice   = "provider-choice"
	RuleCancelOnWithdraw = "cancel-on-withdrawal"
	RuleAmended          = "amendment"
)

// ActorRouter is the role the router acts in: an offer it ended (a
// cancellation on an amendment, say) was not the provider's refusal.
const ActorRouter = "spa-router"

// reasonCriteriaMetAgain is why the router holds or cancels an offer when
// the patient meets a criterion to reside again.
const reasonCriteriaMetAgain = "the patient meets a criterion to reside again"

// Policy is the routing policy in force from a date.
type Policy struct {
	Version string
	From    time.Time
	// InfectionOverlay: a patient bound for a care home needs a test taken
	// within TestValidity; a positive one goes to a designated step-down
	// bed first, never straight to a care home.
	InfectionOverlay bool
	IsolationDays    int32
	TestValidity     time.Duration
}

// Policies are dated policy versions, oldest first.
type Policies []Policy

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, london()) }

// DefaultPolicies is SPA's policy history: the infection overlay of the
// 2020-2022 discharge guidance (isolation 14 days, 10 from 2022), before and
// after it none. The dates are this project's reading of the guidance; a
// deployment may switch the overlay on or off from a date (Switch).
var DefaultPolicies = Policies{
	{Version: "2019.1", From: date(2019, 1, 1)},
	{Version: "2020.1-infection-overlay", From: date(2020, 4, 15), InfectionOverlay: true, IsolationDays: 14, TestValidity: 48 * time.Hour},
	{Version: "2022.1-isolation-10-days", From: date(2022, 1, 1), InfectionOverlay: true, IsolationDays: 10, TestValidity: 48 * time.Hour},
	{Version: "2023.1", From: date(2023, 1, 1)},
}

// At returns the policy in force at t (the oldest one before any).
func (ps Policies) At(t time.Time) Policy {
	p := ps[0]
	for _, q := range ps {
		if !t.Before(q.From) {
			p = q
		}
	}
	return p
}

// Switch returns the policies with the infection overlay switched on or
// off from a date: a new version named "<date>-overlay-on|off" that copies
// the one in force then. Versions after from are dropped, so that the
// switch stays in force.
func (ps Policies) Switch(on bool, from time.Time) Policies {
	base := ps.At(from)
	out := slices.Clone(slices.DeleteFunc(slices.Clone(ps), func(p Policy) bool { return !p.From.Before(from) }))
	base.From, base.InfectionOverlay = from, on
	// Named by its date, or by the instant when it is not the date's
	// midnight (two switches on one day are two versions).
	name := from.In(london()).Format(DateLayout)
	if local := from.In(london()); local.Hour()+local.Minute()+local.Second()+local.Nanosecond() != 0 {
		name = local.Format("2006-01-02T15:04:05")
	}
	base.Version = name + "-overlay-off"
	if on {
		base.Version = name + "-overlay-on"
		base.IsolationDays = cmp.Or(base.IsolationDays, 10)
		base.TestValidity = cmp.Or(base.TestValidity, 48*time.Hour)
	}
	return append(out, base)
}

// Step is the router's next move on a referral: a change to append (zero
// when there is nothing to do), the rule that decided it and the policy in
// force.
type Step struct {
	Change
	Rule   string
	Policy Policy
}

// NextStep decides the router's next move on a referral at event time at
// (the time of the event that prompted it, never the wall clock, so that
// replays agree), given the providers of the patient's borough and the
// policies. It takes one
// step at a time: a pathway decision, a hold or its release, an offer with
// its reservation, a place in the no-capacity queue, or the cancellation of
// a withdrawn referral's offer. The rules are the domain's, in order.
func NextStep(r Referral, providers []Provider, policies Policies, at time.Time) Step {
	step, offering := nextStep(r, policies, at)
	if offering {
		return offer(r, providers, step.Policy)
	}
	return step
}

// NeedsProviders reports whether r's next step is to offer it to a
// provider, the one step NextStep decides from the providers: a caller
// may load them only then.
func NeedsProviders(r Referral, policies Policies, at time.Time) bool {
	_, offering := nextStep(r, policies, at)
	return offering
}

// PolicyStep reports whether a policy that came into force after the
// referral's last fact, and is in force at now, changes its next step (an
// awaiting-test hold the overlay no longer asks for): the instant it came
// into force, the event time to route the referral at. Nothing prompts a
// referral when a date passes, so the scheduler asks this.
//
// Every policy that came into force since the last fact is asked, earliest
// first, so that one in force for a day only still has its step when the
// scheduler first looks after that day.
func PolicyStep(r Referral, policies Policies, now time.Time) (time.Time, bool) {
	if !r.Exists() {
		return time.Time{}, false
	}
	for _, pol := range policies {
		if !pol.From.After(r.FactsAt) || pol.From.After(now) || NeedsProviders(r, policies, pol.From) {
			continue
		}
		if NextStep(r, nil, policies, pol.From).Event != nil {
			return pol.From, true
		}
	}
	return time.Time{}, false
}

// PolicyBound reports whether a policy coming into force may give the
// referral a next step without any event on it: whenever PolicyStep(r, ps,
// now) is true, for any policies and now, so is PolicyBound(r), for a
// referral neither withdrawn nor completed (which the scheduler does not
// route). It is the part of nextStep that reads the policy or the time,
// without them: a read model indexes the referrals it holds for, so that
// the scheduler asks PolicyStep of those only. Keep it in step with
// nextStep.
func PolicyBound(r Referral) bool {
	if !r.Exists() || r.Status == StatusWithdrawn || r.Status == StatusCompleted {
		return false
	}
	// 6a, and 3: the rules asked again, a test hold's end.
	if r.Amended && r.HoldRule != "" && r.LeftHospitalAt.IsZero() || r.Hold == HoldReasonAwaitingTest {
		return true
	}
	live := r.LiveAssignment()
	if live != nil {
		if to, _ := criteriaStep(r, live); to != TaskUnspecified {
			return true
		}
	}
	if r.DischargeReadyDate == "" || r.Hold != HoldReasonUnspecified {
		return false
	}
	// 6: decided again after an amendment; or not decided yet.
	if r.Decided && r.Amended && r.LeftHospitalAt.IsZero() && (live == nil || live.holdsUnit() && live.AcceptedAt.IsZero()) {
		return true
	}
	return live == nil && !r.Decided
}

// nextStep is NextStep up to the offer: the step, or true when the next
// step is an offer.
func nextStep(r Referral, policies Policies, at time.Time) (Step, bool) {
	pol := policies.At(at)
	step := Step{Policy: pol}
	if !r.Exists() {
		return step, false
	}
	live := r.LiveAssignment()
	if r.Withdrawn {
		if live != nil && !live.Status.terminal() {
			ch, err := DecideTransition(r, TransitionAssignment{AssignmentID: live.ID, To: TaskCancelled, Reason: "referral withdrawn"}, at)
			if err == nil {
				step.Change, step.Rule = ch, RuleCancelOnWithdraw
			}
		}
		return step, false
	}
	// 6a. Amended while a routing rule holds it (before the patient
	// left): the hold is released once the rules, asked again, no longer
	// hold it for that reason; the pathway is decided next.
	if r.Amended && r.HoldRule != "" && r.LeftHospitalAt.IsZero() {
		again := decidePathway(r, pol, at)
		if h, held := again.Event.(ReferralHeld); !held || h.Reason != r.Hold {
			step.Event, step.Rule = HoldReleased{Reason: r.Hold, Note: "the referral was amended: " + again.Rule + " fits it now"}, RuleAmended
			return step, false
		}
	}
	// 3. The wait for a test ends with a valid test or with the overlay,
	// whether or not the patient is ready meanwhile.
	if r.Hold == HoldReasonAwaitingTest {
		switch {
		case !pol.InfectionOverlay:
			step.Event, step.Rule = HoldReleased{Reason: HoldReasonAwaitingTest, Note: "the policy in force (" + pol.Version + ") no longer requires a test"}, RuleInfectionOverlay
		case validTest(r, pol, at):
			step.Event, step.Rule = HoldReleased{Reason: HoldReasonAwaitingTest, Note: "a test within the validity window arrived"}, RuleInfectionOverlay
		}
		return step, false
	}
	// 1. Criteria to reside met again with an offer live: an offer not yet
	// accepted is cancelled (its unit released), an accepted one put on
	// hold (the unit kept) and taken up again with a new Discharge Ready
	// Date.
	if live != nil {
		if to, reason := criteriaStep(r, live); to != TaskUnspecified {
			if ch, err := DecideTransition(r, TransitionAssignment{AssignmentID: live.ID, To: to, Reason: reason}, at); err == nil {
				step.Change, step.Rule = ch, RuleCriteriaToReside
			}
			return step, false
		}
	}
	// No decision and no offer without a Discharge Ready Date (also when
	// it was reset after a decision).
	if r.DischargeReadyDate == "" || r.Hold != HoldReasonUnspecified {
		return step, false
	}
	// 6. Amended since the decision, and no provider has accepted: decide
	// again if the decision no longer fits (an offer that no longer fits
	// is cancelled first, its unit released).
	// Not once the patient has left: an amendment is then a record.
	if r.Decided && r.Amended && r.LeftHospitalAt.IsZero() && (live == nil || live.holdsUnit() && live.AcceptedAt.IsZero()) {
		if again := decidePathway(r, pol, at); !fits(r, again) {
			if live == nil {
				return again, false
			}
			reason := "the referral was amended: " + again.Rule + " fits it now"
			if ch, err := DecideTransition(r, TransitionAssignment{AssignmentID: live.ID, To: TaskCancelled, Reason: reason}, at); err == nil {
				step.Change, step.Rule = ch, RuleAmended
			}
			return step, false
		}
	}
	if live != nil {
		return step, false
	}
	if !r.Decided {
		return decidePathway(r, pol, at), false
	}
	if r.Pathway == PathwayP0Home || r.Service == ServiceUnspecified {
		return step, false
	}
	return step, true
}

// criteriaStep is the move of the live offer when the patient meets a
// criterion to reside again (and back when they no longer do), if any.
func criteriaStep(r Referral, live *Assignment) (TaskStatus, string) {
	ready := r.DischargeReadyDate != ""
	switch {
	case !ready && (live.Status == TaskRequested || live.Status == TaskReceived):
		return TaskCancelled, reasonCriteriaMetAgain
	case !ready && live.Status == TaskAccepted:
		return TaskOnHold, reasonCriteriaMetAgain
	case ready && live.Status == TaskOnHold && live.HeldFrom == TaskAccepted && live.Reason == reasonCriteriaMetAgain:
		return TaskAccepted, ""
	}
	return TaskUnspecified, ""
}

// fits reports whether a fresh decision is the one the referral has.
func fits(r Referral, again Step) bool {
	d, ok := again.Event.(PathwayDecided)
	return ok && d.Pathway == r.Pathway && d.Service == r.Service
}

// decidePathway applies rules 1-7 in order.
func decidePathway(r Referral, pol Policy, at time.Time) Step {
	d := r.Details
	step := Step{Policy: pol}
	inputs := map[string]string{
		"admitted_from":             admittedFromName[d.AdmittedFrom],
		"discharge_ready_date":      r.DischargeReadyDate,
		"short_term_bed_based_care": strconv.FormatBool(d.Needs.ShortTermBedBasedCare),
		"ongoing_bedded_care":       strconv.FormatBool(d.Needs.OngoingBeddedCare),
	}
	decide := func(rule string, p Pathway, s Service, reason string) Step {
		step.Rule = rule
		step.Event = PathwayDecided{Pathway: p, Service: s, Rule: rule, ReasonCode: reason, Inputs: inputs}
		return step
	}
	// 1. Criteria to reside: checked by NextStep.
	// 2. End of life fast track: to the preferred place of care.
	if d.EndOfLife.FastTrack {
		inputs["preferred_place"] = placeName[d.EndOfLife.PreferredPlace]
		return decide(RuleEndOfLife, PathwayEndOfLife, endOfLifeService[d.EndOfLife.PreferredPlace], "fast-track")
	}
	// 3. Infection overlay: a patient bound for a care home.
	careHomeBound := d.AdmittedFrom == AdmittedFromCareHome || d.Needs.OngoingBeddedCare
	if pol.InfectionOverlay && careHomeBound {
		inputs["care_home_bound"] = "true"
		inputs["test"] = testInput(r.LatestTest)
		if !validTest(r, pol, at) {
			step.Rule = RuleInfectionOverlay
			step.Event = ReferralHeld{Reason: HoldReasonAwaitingTest, Rule: RuleInfectionOverlay, Inputs: inputs,
				Note: fmt.Sprintf("a test taken within %s before discharge is needed", pol.TestValidity)}
			return step
		}
		if r.LatestTest.Result == TestResultPositive {
			s := decide(RuleInfectionOverlay, PathwayP2StepDown, ServiceDesignatedStepDownBed, "infection-positive-designated-bed")
			pd := s.Event.(PathwayDecided)
			pd.IsolationDays = pol.IsolationDays
			s.Event = pd
			return s
		}
	}
	bedded := d.Needs.ShortTermBedBasedCare || d.Needs.OngoingBeddedCare
	// 4a. An urgent community response asked for: a 2-hour visit where
	// the patient goes (home, or back to the care home), Home First.
	if d.Needs.UrgentCommunityResponse && !bedded {
		inputs["urgent_community_response"] = "true"
		return decide(RuleUrgentResponse, PathwayP1HomeFirst, ServiceUrgentCommunityResponse, "urgent-2h-response")
	}
	housingReleased := slices.Contains(r.ReleasedHolds, HoldReasonHousing)
	// 4. Home First: admitted from home and can be supported at home.
	if !bedded && (d.AdmittedFrom == AdmittedFromHome || housingReleased) {
		if noNewSupport(d) {
			return decide(RuleWardLed, PathwayP0Home, ServiceUnspecified, "home-no-new-support")
		}
		return decide(RuleHomeFirst, PathwayP1HomeFirst, ServiceHomeCareReablement, "home-with-support")
	}
	// 5. Short-term 24h bed-based rehabilitation or assessment.
	if d.Needs.ShortTermBedBasedCare {
		return decide(RuleStepDown, PathwayP2StepDown, ServiceStepDownBed, "short-term-24h-bed")
	}
	// 6. Ongoing 24h bedded care: a care home, with a reason.
	if d.Needs.OngoingBeddedCare {
		return decide(RuleCareHome, PathwayP3CareHome, ServiceCareHomeBed, "ongoing-24h-care")
	}
	if d.AdmittedFrom == AdmittedFromCareHome {
		return decide(RuleWardLed, PathwayP0Home, ServiceUnspecified, "back-to-same-care-home")
	}
	// 7. Holds: nowhere to go home to.
	step.Rule = RuleHold
	step.Event = ReferralHeld{Reason: HoldReasonHousing, Rule: RuleHold, Inputs: inputs, Note: "not admitted from a home; housing needed"}
	return step
}

// offer picks a provider for the decided service and reserves a unit, or
// puts the referral in the no-capacity queue.
func offer(r Referral, providers []Provider, pol Policy) Step {
	step := Step{Policy: pol, Rule: RuleProviderChoice}
	candidates := Candidates(r, r.Service, providers)
	if len(candidates) == 0 {
		if !r.AwaitingCapacity {
			step.Event = AwaitingCapacity{Service: r.Service, Borough: r.Details.Patient.Borough}
		}
		return step
	}
	p := candidates[0]
	id := AssignmentIDFor(r.ID, len(r.Assignments)+1)
	names := make([]string, len(candidates))
	for i, c := range candidates {
		names[i] = c.Details.ODS
	}
	step.Event = OfferMade{AssignmentID: id, ProviderODS: p.Details.ODS, Service: r.Service,
		Inputs: map[string]string{"candidates": strings.Join(names, ","), "borough": r.Details.Patient.Borough}}
	step.ProviderODS = p.Details.ODS
	step.Provider = CapacityReserved{Service: r.Service, ReferralID: r.ID, AssignmentID: id, Tracked: true}
	step.GuardProvider = true
	return step
}

// Candidates returns the providers that may be offered a referral's
// service, best first. A candidate serves the patient's borough, offers
// the service, is open to admissions with a unit free, has not declined
// this referral (nor had an offer of it end otherwise) unless it declared
// capacity of the service since, and accepts infection-positive patients
// if the patient's latest test is positive (a designated bed is for them). Order: trusted
// assessors first (no re-assessment delays the discharge), then the most
// units free (spreading the load), then ODS code, so that any worker
// choosing from the same state chooses the same provider.
func Candidates(r Referral, s Service, providers []Provider) []Provider {
	// The last end of an offer to each provider: it is eligible again
	// once it declares capacity after it (a bed freed, "none until
	// Friday" over).
	ended := map[string]uint64{}
	for _, a := range r.Assignments {
		if !a.EndedBySPA {
			ended[a.ProviderODS] = max(ended[a.ProviderODS], a.EndedSeq)
		}
	}
	positive := r.LatestTest != nil && r.LatestTest.Result == TestResultPositive
	var out []Provider
	for _, p := range providers {
		c, ok := p.CapacityFor(s)
		if seq, offered := ended[p.Details.ODS]; offered && c.DeclaredSeq <= seq {
			continue
		}
		if !ok || !c.Open || c.Available <= 0 || !p.Details.Serves(r.Details.Patient.Borough) {
			continue
		}
		if positive && s != ServiceDesignatedStepDownBed && s != ServiceHospiceAtHome && s != ServiceHomeCareReablement && !p.Details.AcceptsInfectionPositive {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Provider) int {
		ca, _ := a.CapacityFor(s)
		cb, _ := b.CapacityFor(s)
		switch {
		case a.Details.TrustedAssessor != b.Details.TrustedAssessor:
			if a.Details.TrustedAssessor {
				return -1
			}
			return 1
		case ca.Available != cb.Available:
			return int(cb.Available - ca.Available)
		}
		return strings.Compare(a.Details.ODS, b.Details.ODS)
	})
	return out
}

// validTest reports whether the latest test was taken within the policy's
// validity window before at.
func validTest(r Referral, pol Policy, at time.Time) bool {
	t := r.LatestTest
	return t != nil && !t.TakenAt.After(at.Add(clockSkew)) && at.Sub(t.TakenAt) <= pol.TestValidity
}

// noNewSupport: pathway 0, home with no new care.
func noNewSupport(d Details) bool {
	n := d.Needs
	return n.CareCallsPerDay == 0 && n.CarersPerTransfer == 0 && len(n.Equipment) == 0 && n.Mobility == MobilityIndependent
}

func testInput(t *InfectionTest) string {
	if t == nil {
		return "none"
	}
	return fmt.Sprintf("%s taken %s", testResultName[t.Result], t.TakenAt.UTC().Format(time.RFC3339))
}

var (
	admittedFromName = map[AdmittedFrom]string{AdmittedFromHome: "home", AdmittedFromCareHome: "care-home", AdmittedFromOther: "other"}
	placeName        = map[PlaceOfCare]string{PlaceOfCareHome: "home", PlaceOfCareHospice: "hospice", PlaceOfCareNursingHome: "nursing-home"}
	testResultName   = map[TestResult]string{TestResultNegative: "negative", TestResultPositive: "positive"}
	endOfLifeService = map[PlaceOfCare]Service{
		PlaceOfCareHome: ServiceHospiceAtHome, PlaceOfCareHospice: ServiceHospiceBed, PlaceOfCareNursingHome: ServiceCareHomeBed,
	}
)
