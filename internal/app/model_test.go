package app_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"spa/internal/app"
	"spa/internal/spa"
)

// TestModel drives the application and the domain core with random
// sequences of submissions, criteria to reside, tests, honest counts of
// vacancies, offers (the router), answers to offers, holds, withdrawals,
// departures, retried commands and steps of time (the scheduler), and
// checks the domain's promises after every step:
//
//   - no bed is promised twice: per provider and service, the patients
//     offered a unit and not yet in care plus the patients in care never
//     exceed the provider's beds, while the provider only ever counts its
//     free beds honestly;
//   - every unit offered and not yet taken up is reserved;
//   - no referral has two live offers;
//   - every alert is raised at most once per clock start, and none that
//     is due is left unraised after a pass of the scheduler;
//   - an awaiting-test hold never outlives the policy that asked for it;
//   - every retried command answers as the first time and appends nothing.
//
// go test -run TestModel -rapid.checks=10000 ./internal/app runs it at
// the size the closing notes report; CI runs the default 100.
func TestModel(t *testing.T) {
	t.Parallel()
	var sequences, steps, events atomic.Int64
	rapid.Check(t, func(t *rapid.T) {
		m := newModel(t)
		m.run(t)
		sequences.Add(1)
		steps.Add(int64(m.steps))
		events.Add(int64(m.store.seq))
	})
	t.Logf("%d sequences, %d steps, %d events", sequences.Load(), steps.Load(), events.Load())
}

// modelProvider is a provider's physical truth: its beds per service.
type modelProvider struct {
	ods  string
	beds map[spa.Service]int
}

type model struct {
	ctx       context.Context
	store     *memStore
	app       *app.App
	now       time.Time
	policies  spa.Policies
	providers []modelProvider
	referrals []string
	done      []doneCommand
	requests  int
	steps     int
}

// doneCommand is a command that appended, kept to be retried.
type doneCommand struct {
	name string
	meta app.Meta
	run  func(app.Meta) (uint64, error)
	seq  uint64
}

var (
	modelStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	london, _  = time.LoadLocation("Europe/London")
)

func newModel(t *rapid.T) *model {
	m := &model{ctx: context.Background(), store: &memStore{recs: map[string][]spa.Record{}}, now: modelStart, policies: spa.DefaultPolicies}
	m.app = app.New(m.store, nil, app.WithClock(func() time.Time { return m.now }), app.WithWorker("model", modelRouting{m: m, t: t}))
	if rapid.Bool().Draw(t, "overlay") {
		// The infection overlay in force from the day before, ended some
		// hours into the run.
		end := modelStart.Add(time.Duration(rapid.IntRange(1, 72).Draw(t, "overlay hours")) * time.Hour)
		m.policies = spa.DefaultPolicies.Switch(true, modelStart.Add(-24*time.Hour)).Switch(false, end)
	}
	services := map[string][]spa.Service{
		"NQR01": {spa.ServiceHomeCareReablement, spa.ServiceUrgentCommunityResponse},
		"STP01": {spa.ServiceStepDownBed, spa.ServiceDesignatedStepDownBed},
		"VLAXL": {spa.ServiceCareHomeBed, spa.ServiceStepDownBed},
		"HOS01": {spa.ServiceHospiceBed, spa.ServiceHospiceAtHome},
	}
	for _, ods := range []string{"HOS01", "NQR01", "STP01", "VLAXL"} {
		p := modelProvider{ods: ods, beds: map[spa.Service]int{}}
		for _, s := range services[ods] {
			p.beds[s] = rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("beds %s %d", ods, s))
		}
		m.providers = append(m.providers, p)
		d := spa.ProviderDetails{ODS: ods, Name: "Provider " + ods, Boroughs: []string{"Bromley"}, Services: services[ods], AcceptsInfectionPositive: ods == "VLAXL"}
		if _, _, err := m.app.RegisterProvider(m.ctx, app.Meta{}, spa.RegisterProvider{Details: d}); err != nil {
			t.Fatalf("register %s: %v", ods, err)
		}
	}
	return m
}

func (m *model) run(t *rapid.T) {
	t.Repeat(map[string]func(*rapid.T){
		"": func(t *rapid.T) {
			m.steps++
			m.check(t)
		},
		"submit":   m.submit,
		"criteria": m.criteria,
		"amend":    m.amend,
		"test":     m.test,
		"declare":  m.declare,
		"answer":   m.answer,
		"hold":     m.hold,
		"release":  m.release,
		"withdraw": m.withdraw,
		"left":     m.left,
		"retry":    m.retry,
		"tick":     m.tick,
	})
}

// command runs a command with a new request id; one that appended is kept
// for retries. Only refusals the domain gives for the state are allowed.
func (m *model) command(t *rapid.T, name string, run func(app.Meta) (uint64, error)) {
	m.requests++
	meta := app.Meta{Request: spa.Request{ID: fmt.Sprintf("model-request-%05d", m.requests), Hash: []byte(name + rand.Text())}}
	before := m.store.seq
	seq, err := run(meta)
	switch spa.KindOf(err) {
	case 0:
		if m.store.seq > before {
			m.done = append(m.done, doneCommand{name: name, meta: meta, run: run, seq: seq})
		}
	case spa.KindNotFound, spa.KindFailedPrecondition:
	default:
		t.Fatalf("%s: %v", name, err)
	}
	m.settle(t)
}

func (m *model) pickReferral(t *rapid.T) (string, bool) {
	if len(m.referrals) == 0 {
		return "", false
	}
	return rapid.SampledFrom(m.referrals).Draw(t, "referral"), true
}

func (m *model) referral(t *rapid.T, id string) spa.Referral {
	recs, _, err := m.store.Load(m.ctx, spa.AggregateReferral, id)
	if err != nil {
		t.Fatal(err)
	}
	return spa.Replay(recs)
}

func (m *model) provider(t *rapid.T, ods string) spa.Provider {
	recs, _, err := m.store.Load(m.ctx, spa.AggregateProvider, ods)
	if err != nil {
		t.Fatal(err)
	}
	var p spa.Provider
	for _, rec := range recs {
		p.Apply(rec)
	}
	return p
}

func (m *model) submit(t *rapid.T) {
	today := spa.LocalDate(m.now)
	d := spa.Details{
		Patient:      spa.Patient{NHSNumber: "9434765919", GivenName: "Ann", FamilyName: "Patient", BirthDate: "1940-01-01", Postcode: "BR1 3JH", Borough: "Bromley"},
		Episode:      spa.Episode{SiteODS: "RJZ30", Ward: "Darwin Ward", AdmissionDate: spa.LocalDate(modelStart.Add(-72 * time.Hour))},
		AdmittedFrom: spa.AdmittedFromHome,
		Needs:        spa.Needs{Mobility: spa.MobilityWalkingAid, CareCallsPerDay: 2},
		HospitalLead: spa.Contact{Name: "Ada Obi", Phone: "020 8000 1234"},
	}
	switch rapid.SampledFrom([]string{"home", "urgent", "step-down", "care-home", "from-care-home", "end-of-life"}).Draw(t, "kind") {
	case "urgent":
		d.Needs.UrgentCommunityResponse = true
	case "step-down":
		d.Needs.ShortTermBedBasedCare = true
	case "care-home":
		d.Needs.OngoingBeddedCare = true
	case "from-care-home":
		d.AdmittedFrom = spa.AdmittedFromCareHome
	case "end-of-life":
		d.EndOfLife = spa.EndOfLife{FastTrack: true, PreferredPlace: spa.PlaceOfCareHospice}
	}
	if rapid.Bool().Draw(t, "ready") {
		d.DischargeReadyDate = today
	} else {
		d.CriteriaMet = []spa.Criterion{spa.CriterionOxygen}
	}
	c := spa.SubmitReferral{RequestID: fmt.Sprintf("model-submit-%04d", len(m.referrals)), Details: d}
	res, err := m.app.SubmitReferral(m.ctx, app.Meta{}, c)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	m.referrals = append(m.referrals, res.ReferralID)
	m.settle(t)
}

func (m *model) criteria(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	var met []spa.Criterion
	if rapid.Bool().Draw(t, "still meets a criterion") {
		met = []spa.Criterion{spa.CriterionNEWS2Above3}
	}
	m.command(t, "criteria", func(meta app.Meta) (uint64, error) {
		_, seq, err := m.app.RecordCriteriaToReside(m.ctx, meta, spa.RecordCriteriaToReside{ReferralID: id, CriteriaMet: met, AssessedOn: spa.LocalDate(m.now)})
		return seq, err
	})
}

// amend changes a referral's needs, as a ward does after a reassessment.
func (m *model) amend(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	needs := spa.Needs{Mobility: spa.MobilityWalkingAid, CareCallsPerDay: 2}
	switch rapid.SampledFrom([]string{"home", "urgent", "step-down", "care-home", "independent"}).Draw(t, "needs") {
	case "urgent":
		needs.UrgentCommunityResponse = true
	case "step-down":
		needs.ShortTermBedBasedCare = true
	case "care-home":
		needs.OngoingBeddedCare = true
	case "independent":
		needs = spa.Needs{Mobility: spa.MobilityIndependent, SafeAloneOvernight: true}
	}
	m.command(t, "amend", func(meta app.Meta) (uint64, error) {
		seq, _, err := m.app.AmendReferral(m.ctx, meta, spa.AmendReferral{ReferralID: id, Paths: []string{"needs"}, Reason: "reassessed", Details: spa.Details{Needs: needs}})
		return seq, err
	})
}

func (m *model) test(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	result := rapid.SampledFrom([]spa.TestResult{spa.TestResultNegative, spa.TestResultPositive}).Draw(t, "result")
	taken := m.now.Add(-time.Duration(rapid.IntRange(0, 60).Draw(t, "test age hours")) * time.Hour)
	m.command(t, "test", func(meta app.Meta) (uint64, error) {
		return m.app.RecordInfectionTest(m.ctx, meta, spa.RecordInfectionTest{ReferralID: id, Test: spa.InfectionTest{Type: spa.TestTypePCR, TakenAt: taken, Result: result}})
	})
}

// declare: a provider counts its free beds of a service, honestly, now.
func (m *model) declare(t *rapid.T) {
	p := rapid.SampledFrom(m.providers).Draw(t, "provider")
	services := make([]spa.Service, 0, len(p.beds))
	for s := range p.beds {
		services = append(services, s)
	}
	slices.Sort(services)
	s := rapid.SampledFrom(services).Draw(t, "service")
	free := p.beds[s] - m.inCare(t, p.ods, s)
	if free < 0 {
		t.Fatalf("%s %d: %d patients in %d beds", p.ods, s, m.inCare(t, p.ods, s), p.beds[s])
	}
	open := rapid.IntRange(0, 9).Draw(t, "open") > 0
	m.command(t, "declare", func(meta app.Meta) (uint64, error) {
		seq, _, err := m.app.UpdateCapacity(m.ctx, meta, spa.UpdateCapacity{ProviderODS: p.ods,
			Capacity: []spa.Capacity{{Service: s, Available: int32(free), Open: open, AsOf: m.now}}})
		return seq, err
	})
}

func (m *model) answer(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	r := m.referral(t, id)
	if len(r.Assignments) == 0 {
		t.Skip("no assignment")
	}
	a := rapid.SampledFrom(r.Assignments).Draw(t, "assignment")
	to := rapid.SampledFrom([]spa.TaskStatus{spa.TaskReceived, spa.TaskAccepted, spa.TaskRejected, spa.TaskInProgress,
		spa.TaskOnHold, spa.TaskCompleted, spa.TaskFailed, spa.TaskCancelled}).Draw(t, "to")
	reason := ""
	if to == spa.TaskRejected || to == spa.TaskFailed || to == spa.TaskCancelled {
		reason = "no carers"
	}
	m.command(t, "answer "+to.String(), func(meta app.Meta) (uint64, error) {
		return m.app.TransitionAssignment(m.ctx, meta, spa.TransitionAssignment{AssignmentID: a.ID, To: to, Reason: reason})
	})
}

func (m *model) hold(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	reason := rapid.SampledFrom([]spa.HoldReason{spa.HoldReasonMentalCapacity, spa.HoldReasonSafeguarding, spa.HoldReasonFundingDispute}).Draw(t, "reason")
	m.command(t, "hold", func(meta app.Meta) (uint64, error) {
		return m.app.HoldReferral(m.ctx, meta, spa.HoldReferral{ReferralID: id, Reason: reason})
	})
}

func (m *model) release(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	m.command(t, "release", func(meta app.Meta) (uint64, error) {
		return m.app.ReleaseHold(m.ctx, meta, spa.ReleaseHold{ReferralID: id})
	})
}

func (m *model) withdraw(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	m.command(t, "withdraw", func(meta app.Meta) (uint64, error) {
		return m.app.WithdrawReferral(m.ctx, meta, spa.WithdrawReferral{ReferralID: id, Reason: spa.WithdrawalReasonDeteriorated})
	})
}

func (m *model) left(t *rapid.T) {
	id, ok := m.pickReferral(t)
	if !ok {
		t.Skip("no referral")
	}
	m.command(t, "left", func(meta app.Meta) (uint64, error) {
		return m.app.RecordPatientLeft(m.ctx, meta, spa.RecordPatientLeft{ReferralID: id, LeftAt: m.now})
	})
}

// retry sends a command that took effect again, as it was: it answers as
// the first time and appends nothing.
func (m *model) retry(t *rapid.T) {
	if len(m.done) == 0 {
		t.Skip("nothing to retry")
	}
	c := rapid.SampledFrom(m.done).Draw(t, "command")
	before := m.store.seq
	seq, err := c.run(c.meta)
	if err != nil || seq != c.seq {
		t.Fatalf("%s retried: sequence %d, %v; want %d", c.name, seq, err, c.seq)
	}
	if m.store.seq != before {
		t.Fatalf("%s retried: appended %d events", c.name, m.store.seq-before)
	}
}

// tick moves time on: minutes, or hours.
func (m *model) tick(t *rapid.T) {
	d := time.Duration(rapid.IntRange(1, 120).Draw(t, "minutes")) * time.Minute
	if rapid.IntRange(0, 4).Draw(t, "long") == 0 {
		d = time.Duration(rapid.IntRange(1, 30).Draw(t, "hours")) * time.Hour
	}
	m.now = m.now.Add(d)
	m.settle(t)
}

// settle has the application take every referral's routing steps (as
// the router does) until none moves, then raise the alerts due (as the
// scheduler does).
func (m *model) settle(t *rapid.T) {
	for range 20 {
		moved := false
		for _, id := range m.referrals {
			before := m.store.last()
			if err := m.app.RouteReferral(m.ctx, id, m.now); err != nil {
				t.Fatalf("routing %s: %v", id, err)
			}
			moved = moved || m.store.last() != before
		}
		if !moved {
			m.schedule(t)
			return
		}
	}
	t.Fatal("routing does not settle")
}

// schedule has the application raise every alert due, as the scheduler
// does; none may be dated after now.
func (m *model) schedule(t *rapid.T) {
	for _, id := range m.referrals {
		if err := m.app.RaiseAlerts(m.ctx, id, spa.DefaultOperatingHours, m.now); err != nil {
			t.Fatalf("raising %s's alerts: %v", id, err)
		}
		for _, a := range m.referral(t, id).Alerts {
			if a.At.After(m.now) {
				t.Fatalf("%s: alert %+v raised for a time after now (%s)", id, a, m.now)
			}
		}
	}
}

// modelRouting is what the routing steps read in the model: the providers
// and the policies as the model has them now.
type modelRouting struct {
	m *model
	t *rapid.T
}

func (r modelRouting) Providers(string) ([]spa.Provider, error) {
	var out []spa.Provider
	for _, p := range r.m.providers {
		out = append(out, r.m.provider(r.t, p.ods))
	}
	return out, nil
}

func (r modelRouting) AwaitingCapacity(string, spa.Service) ([]spa.Referral, error) {
	return nil, errNotModelled
}
func (r modelRouting) AwaitingTest() ([]spa.Referral, error) { return nil, errNotModelled }
func (r modelRouting) Policies() (spa.Policies, error)       { return r.m.policies, nil }
func (r modelRouting) CatchUp(context.Context) error         { return nil }

// errNotModelled: the model routes each referral itself (settle).
var errNotModelled = errors.New("not in the model")

// inCare counts the patients in a provider's care for a service.
func (m *model) inCare(t *rapid.T, ods string, s spa.Service) int {
	n := 0
	for _, id := range m.referrals {
		for _, a := range m.referral(t, id).Assignments {
			if a.ProviderODS == ods && a.Service == s && (a.Status == spa.TaskInProgress || a.Status == spa.TaskOnHold && a.HeldFrom == spa.TaskInProgress) {
				n++
			}
		}
	}
	return n
}

// check checks every promise.
func (m *model) check(t *rapid.T) {
	type unit struct {
		ods string
		s   spa.Service
	}
	promised, inCare := map[unit]int{}, map[unit]int{}
	for _, id := range m.referrals {
		r := m.referral(t, id)
		live := 0
		for _, a := range r.Assignments {
			u := unit{a.ProviderODS, a.Service}
			switch {
			case a.Status == spa.TaskRequested || a.Status == spa.TaskReceived || a.Status == spa.TaskAccepted,
				a.Status == spa.TaskOnHold && a.HeldFrom != spa.TaskInProgress:
				promised[u]++
				live++
			case a.Status == spa.TaskInProgress, a.Status == spa.TaskOnHold:
				inCare[u]++
			}
		}
		if live > 1 {
			t.Fatalf("%s has %d live offers: %+v", id, live, r.Assignments)
		}
		seen := map[string]bool{}
		for _, al := range r.Alerts {
			key := fmt.Sprintf("%s/%d/%d/%s", al.Clock, al.Level, al.DelayDays, al.StartedAt)
			if seen[key] {
				t.Fatalf("%s: alert %s raised twice", id, key)
			}
			seen[key] = true
		}
		if due := spa.DueAlerts(r, spa.DefaultOperatingHours, m.now); len(due) > 0 {
			t.Fatalf("%s: alerts due and not raised: %+v", id, due)
		}
		// Independently of DueAlerts: a patient still in hospital, never
		// held, whose Discharge Ready Date's UK day is over has the
		// same-day breach of that date's clock raised.
		if day, err := time.ParseInLocation(spa.DateLayout, r.DischargeReadyDate, london); err == nil &&
			!r.Withdrawn && r.LeftHospitalAt.IsZero() && len(r.Holds) == 0 && !m.now.Before(day.AddDate(0, 0, 1)) &&
			!slices.ContainsFunc(r.Alerts, func(a spa.Alert) bool {
				return a.Clock == spa.ClockSameDayDischarge && a.Level == spa.ClockBreach && a.StartedAt.Equal(day)
			}) {
			t.Fatalf("%s: the same-day breach of the Discharge Ready Date %s was not raised (alerts %+v)", id, r.DischargeReadyDate, r.Alerts)
		}
		if r.Hold == spa.HoldReasonAwaitingTest && !r.Withdrawn && !m.policies.At(m.now).InfectionOverlay {
			t.Fatalf("%s waits for a test the policy in force (%s) does not ask for", id, m.policies.At(m.now).Version)
		}
	}
	for _, mp := range m.providers {
		p := m.provider(t, mp.ods)
		for s, beds := range mp.beds {
			u := unit{mp.ods, s}
			if promised[u]+inCare[u] > beds {
				t.Fatalf("%s %d: %d offered and %d in care, in %d beds: a bed promised twice", mp.ods, s, promised[u], inCare[u], beds)
			}
			c, _ := p.CapacityFor(s)
			if int(c.Reserved) < promised[u] {
				t.Fatalf("%s %d: %d offers live, %d reserved", mp.ods, s, promised[u], c.Reserved)
			}
		}
	}
}
