package rpc_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"spa/internal/spa"
)

// maxItems is the documented maximum of every repeated field a request
// can hold, at any depth, by request message and path. A repeated field
// missing here fails TestEveryRepeatedFieldHasAMaximum: give it a maximum
// in the domain's validation, a constant whose doc comment states it, and
// a row here.
var maxItems = map[string]int{
	"spa.v1.SubmitReferralRequest referral.needs.equipment": spa.MaxEquipment,
	"spa.v1.SubmitReferralRequest referral.criteria_met":    spa.MaxCriteria,
	"spa.v1.RecordCriteriaToResideRequest criteria_met":     spa.MaxCriteria,
	"spa.v1.AmendReferralRequest changes.needs.equipment":   spa.MaxEquipment,
	"spa.v1.AmendReferralRequest update_mask.paths":         len(spa.Amendable),
	"spa.v1.RegisterProviderRequest provider.boroughs":      spa.MaxBoroughs,
	"spa.v1.RegisterProviderRequest provider.services":      spa.MaxServices,
	"spa.v1.UpdateCapacityRequest capacity":                 spa.MaxCapacityEntries,
	"spa.v1.ReplayEventsRequest event_types":                spa.MaxEventTypes,
}

// reachable is a field a request can hold: its path in violations
// ("capacity[0].as_of") and the fields leading to it, a list's first
// element standing for every element.
type reachable struct {
	path  string
	steps []protoreflect.FieldDescriptor
}

const timestampName = "google.protobuf.Timestamp"

// fieldsOf returns every field reachable from md, depth first.
func fieldsOf(md protoreflect.MessageDescriptor) []reachable {
	var out []reachable
	var walk func(md protoreflect.MessageDescriptor, prefix string, steps []protoreflect.FieldDescriptor, seen []protoreflect.FullName)
	walk = func(md protoreflect.MessageDescriptor, prefix string, steps []protoreflect.FieldDescriptor, seen []protoreflect.FullName) {
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			r := reachable{path: prefix + string(fd.Name()), steps: append(slices.Clip(steps), fd)}
			out = append(out, r)
			sub := fd.Message()
			if sub == nil || fd.IsMap() || sub.FullName() == timestampName || slices.Contains(seen, sub.FullName()) {
				continue
			}
			next := r.path + "."
			if fd.IsList() {
				next = r.path + "[0]."
			}
			walk(sub, next, r.steps, append(slices.Clip(seen), sub.FullName()))
		}
	}
	walk(md, "", nil, []protoreflect.FullName{md.FullName()})
	return out
}

// holder returns the message that holds r's field within root, creating
// the messages on the way (one element of each list).
func (r reachable) holder(root protoreflect.Message) protoreflect.Message {
	m := root
	for _, fd := range r.steps[:len(r.steps)-1] {
		if !fd.IsList() {
			m = m.Mutable(fd).Message()
			continue
		}
		l := m.Mutable(fd).List()
		if l.Len() == 0 {
			l.Append(l.NewElement())
		}
		m = l.Get(0).Message()
	}
	return m
}

func (r reachable) field() protoreflect.FieldDescriptor { return r.steps[len(r.steps)-1] }

// fill sets r's list to n distinct items: messages empty, enums cycling
// through their values other than zero, strings "item 0", "item 1", ...
func (r reachable) fill(tb testing.TB, root protoreflect.Message, n int) {
	tb.Helper()
	fd := r.field()
	if fd.IsMap() {
		tb.Fatalf("%s: a map; teach this test to fill one", r.path)
	}
	l := r.holder(root).Mutable(fd).List()
	for i := range n {
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.MessageKind:
			v = l.NewElement()
		case protoreflect.EnumKind:
			values := fd.Enum().Values()
			v = protoreflect.ValueOfEnum(values.Get(1 + i%(values.Len()-1)).Number())
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString(fmt.Sprint("item ", i))
		default:
			tb.Fatalf("%s: a list of %s; teach this test to fill one", r.path, fd.Kind())
		}
		l.Append(v)
	}
}

func TestValidRequestsPassValidation(t *testing.T) {
	t.Parallel()
	x := newAPI(t)
	valid := validRequests()
	for _, m := range methods(t) {
		req, ok := valid[m.FullName()]
		if !ok {
			t.Errorf("%s: no valid request; add one to validRequests (and a seed to the fuzz corpus)", m.FullName())
			continue
		}
		err := x.call(t, context.Background(), m, req)
		if fields := x.check(t, m, err); fields != nil {
			t.Errorf("%s: a valid request is refused: %v", m.FullName(), err)
		}
	}
}

// TestEveryRepeatedFieldHasAMaximum fills every repeated field a request
// can hold with its documented maximum of items, which is not refused for
// being too long, and with one more, which is refused with a violation
// naming the field.
func TestEveryRepeatedFieldHasAMaximum(t *testing.T) {
	t.Parallel()
	x := newAPI(t)
	found := map[string]bool{}
	for _, m := range methods(t) {
		for _, r := range fieldsOf(m.Input()) {
			if !r.field().IsList() && !r.field().IsMap() {
				continue
			}
			key := string(m.Input().FullName()) + " " + r.path
			found[key] = true
			max, ok := maxItems[key]
			if !ok {
				t.Errorf("%s: %s is repeated, with no documented maximum", m.FullName(), r.path)
				continue
			}
			t.Run(string(m.Name())+"/"+r.path, func(t *testing.T) {
				t.Parallel()
				for _, n := range []int{max, max + 1} {
					req := newRequest(t, m)
					r.fill(t, req.ProtoReflect(), n)
					fields := x.check(t, m, x.call(t, context.Background(), m, req))
					if refused := slices.Contains(fields, r.path); refused != (n > max) {
						t.Errorf("%d items (maximum %d): refused %v; violations %q", n, max, refused, fields)
					}
				}
			})
		}
	}
	for key := range maxItems {
		if !found[key] {
			t.Errorf("maxItems lists %s, which no request holds", key)
		}
	}
}

// TestEveryTimestampIsChecked sets every Timestamp a request can hold to
// values that are no instant, each refused with a violation naming it,
// and to a valid recent time, which is not.
func TestEveryTimestampIsChecked(t *testing.T) {
	t.Parallel()
	x := newAPI(t)
	recent := now.Add(-time.Hour).Unix()
	values := []struct {
		name  string
		ts    *timestamppb.Timestamp
		valid bool
	}{
		{"an hour ago", timestamppb.New(now.Add(-time.Hour)), true},
		{"nanos of a whole second", &timestamppb.Timestamp{Seconds: recent, Nanos: 1e9}, false},
		{"negative nanos", &timestamppb.Timestamp{Seconds: recent, Nanos: -1}, false},
		{"year 10000", &timestamppb.Timestamp{Seconds: 253402300800}, false},
		{"before year 1", &timestamppb.Timestamp{Seconds: -62135596801}, false},
	}
	checked := 0
	for _, m := range methods(t) {
		for _, r := range fieldsOf(m.Input()) {
			if r.field().Message() == nil || r.field().Message().FullName() != timestampName {
				continue
			}
			if r.field().IsList() || r.field().IsMap() {
				t.Errorf("%s: %s is a list of timestamps; teach this test to check one", m.FullName(), r.path)
				continue
			}
			checked++
			for _, v := range values {
				t.Run(string(m.Name())+"/"+r.path+"/"+v.name, func(t *testing.T) {
					t.Parallel()
					req := newRequest(t, m)
					r.holder(req.ProtoReflect()).Set(r.field(), protoreflect.ValueOfMessage(v.ts.ProtoReflect()))
					fields := x.check(t, m, x.call(t, context.Background(), m, req))
					if refused := slices.Contains(fields, r.path); refused == v.valid {
						t.Errorf("%v: refused %v; violations %q", v.ts, refused, fields)
					}
				})
			}
		}
	}
	if checked == 0 {
		t.Fatal("no request holds a timestamp")
	}
}
