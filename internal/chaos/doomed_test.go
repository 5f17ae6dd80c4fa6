package chaos

import (
	"strings"
	"testing"
	"time"
)

// A clean alternation: good 1 (rev 1), doomed 2 (rev 2) rolled back by 3
// to 1, good 3 (rev 4), doomed 4 (rev 5) rolled back by 6 to 4.
func doomedLog(t0 time.Time) []DoomedOp {
	return []DoomedOp{
		{Value: 1, Outcome: Ok, Revision: 1, Call: t0},
		{Value: 2, Doomed: true, Outcome: Ok, Revision: 2, Call: t0.Add(time.Second), Ended: t0.Add(3 * time.Second)},
		{Value: 3, Outcome: Ok, Revision: 4, Call: t0.Add(4 * time.Second)},
		{Value: 4, Doomed: true, Outcome: Ok, Revision: 5, Call: t0.Add(5 * time.Second), Ended: t0.Add(7 * time.Second)},
	}
}

func doomedFinal() []Revision {
	return []Revision{
		{Number: 1, Value: 1, Cause: "apply", State: "superseded"},
		{Number: 2, Value: 2, Cause: "apply", State: "rolled_back"},
		{Number: 3, Value: 1, Cause: "automatic rollback of 2 to 1", State: "superseded", RollbackOf: 2, RollbackTo: 1},
		{Number: 4, Value: 3, Cause: "apply", State: "superseded"},
		{Number: 5, Value: 4, Cause: "apply", State: "rolled_back"},
		{Number: 6, Value: 3, Cause: "automatic rollback of 5 to 4", State: "succeeded", RollbackOf: 5, RollbackTo: 4},
	}
}

func TestCheckDoomed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	fault := []Window{{Start: t0.Add(6 * time.Second), End: t0.Add(8 * time.Second)}}
	rep := CheckDoomed(doomedLog(t0), doomedFinal(), fault)
	if err := rep.Err(); err != nil || rep.Rollbacks != 2 || rep.WithFault != 1 {
		t.Fatalf("clean history: %+v, %v", rep, err)
	}

	cases := []struct {
		name  string
		edit  func(log []DoomedOp, f []Revision) ([]DoomedOp, []Revision)
		wants string
	}{
		{"doubled rollback", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[5].State = "superseded"
			return l, append(f, Revision{Number: 7, Value: 3, Cause: "automatic rollback of 5 to 4", State: "succeeded", RollbackOf: 5, RollbackTo: 4})
		}, "rolled back twice"},
		{"missing rollback", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[4].State = "superseded"
			return append(l, DoomedOp{Value: 5, Outcome: Ok, Revision: 6}), append(f[:5], Revision{Number: 6, Value: 5, Cause: "apply", State: "succeeded"})
		}, "no automatic rollback after it"},
		{"doomed never ends", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[4].State = "in_progress"
			return l[:4], f[:5]
		}, "no automatic rollback after it"},
		{"rollback restores the wrong value", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[5].Value = 1
			return l, f
		}, "carries value 1, not 3"},
		{"rollback restores a doomed release", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[5].RollbackTo, f[5].Value, f[5].Cause = 2, 2, "automatic rollback of 5 to 2"
			return l, f
		}, "a doomed release"},
		{"rolled back but marked succeeded", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[4].State = "succeeded"
			return l, f
		}, "rolled back by 6 but ended"},
		{"manual cause", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[5].Cause = "rollback of 5 to 4"
			return l, f
		}, "want \"automatic rollback of 5 to 4\""},
		{"rollback of a good release", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			f[3].State = "rolled_back"
			f[4] = Revision{Number: 5, Value: 1, Cause: "automatic rollback of 4 to 1", State: "superseded", RollbackOf: 4, RollbackTo: 1}
			return l[:3], f[:5]
		}, "not a doomed release"},
		{"ends on a doomed value", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			return l, f[:5]
		}, "not a good release"},
		{"a write applied twice", func(l []DoomedOp, f []Revision) ([]DoomedOp, []Revision) {
			return append(l, DoomedOp{Value: 5, Outcome: Ok, Revision: 7}), append(f, Revision{Number: 7, Value: 3, Cause: "apply", State: "succeeded"})
		}, "acknowledged as revision 4 is revision 7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, f := c.edit(doomedLog(t0), doomedFinal())
			err := CheckDoomed(l, f, nil).Err()
			if err == nil || !strings.Contains(err.Error(), c.wants) {
				t.Fatalf("got %v, want a problem with %q", err, c.wants)
			}
		})
	}

	// A doomed release whose answer was lost, superseded by the next
	// good apply before its deadline: allowed only for a lost answer.
	l := []DoomedOp{{Value: 1, Outcome: Ok, Revision: 1}, {Value: 2, Doomed: true, Outcome: Unknown}, {Value: 3, Outcome: Ok, Revision: 3}}
	f := []Revision{{Number: 1, Value: 1, Cause: "apply", State: "superseded"}, {Number: 2, Value: 2, Cause: "apply", State: "superseded"}, {Number: 3, Value: 3, Cause: "apply", State: "succeeded"}}
	if err := CheckDoomed(l, f, nil).Err(); err != nil {
		t.Fatalf("lost answer: %v", err)
	}
	l[1].Outcome, l[1].Revision = Ok, 2
	if err := CheckDoomed(l, f, nil).Err(); err == nil {
		t.Fatal("an acknowledged doomed release superseded instead of rolled back passed")
	}
	// Set aside or not, a stalled release that was then rolled back twice
	// is still caught.
	f2 := []Revision{f[0], {Number: 2, Value: 2, Cause: "apply", State: "rolled_back"},
		{Number: 3, Value: 1, Cause: "automatic rollback of 2 to 1", State: "superseded", RollbackOf: 2, RollbackTo: 1},
		{Number: 4, Value: 1, Cause: "automatic rollback of 2 to 1", State: "succeeded", RollbackOf: 2, RollbackTo: 1}}
	if err := CheckDoomed(l[:2], f2, nil).Err(); err == nil || !strings.Contains(err.Error(), "rolled back twice") {
		t.Fatalf("doubled rollback after a stall: %v", err)
	}
}
