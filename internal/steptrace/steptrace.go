// Package steptrace times the steps of one plugin command and, when the
// environment variable BERTH_TRACE is set, writes their durations to
// stderr in one line when the command ends:
//
//	berth-trace bridge ADD main+0.41ms conf=0.05 netns=0.22 ... total=3.10
//
// "main+" is the time from the process's start (its first package init)
// to the first mark, so process start and Go init show beside the work.
// Unset, every call is a no-op costing a branch: hack/bench and strace
// are how a reader finds where an ADD's milliseconds go (issue 14).
package steptrace

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// processStart is as early as Go code can look: package variables are
// initialised before any init function of the importing packages.
var processStart = time.Now()

// out is where Done writes (tests swap it).
var out io.Writer = os.Stderr

// Trace is the timeline of one command; the zero value and nil are off.
type Trace struct {
	mu    sync.Mutex
	name  string
	start time.Time
	last  time.Time
	steps []string
}

// Start begins a timeline named name (plugin and command); nil when
// tracing is off.
func Start(name string) *Trace {
	if os.Getenv("BERTH_TRACE") == "" {
		return nil
	}
	now := time.Now()
	return &Trace{name: name, start: now, last: now,
		steps: []string{fmt.Sprintf("main+%.2fms", ms(now.Sub(processStart)))}}
}

// Mark ends the step called step: the time since the previous mark.
func (t *Trace) Mark(step string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.steps = append(t.steps, fmt.Sprintf("%s=%.2f", step, ms(now.Sub(t.last))))
	t.last = now
}

// Span records a step that ran alongside others (a goroutine): its own
// duration, without moving the sequential mark.
func (t *Trace) Span(step string, d time.Duration) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.steps = append(t.steps, fmt.Sprintf("[%s=%.2f]", step, ms(d)))
}

// Done writes the timeline to stderr.
func (t *Trace) Done() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(out, "berth-trace %s %s total=%.2f\n", t.name, strings.Join(t.steps, " "), ms(time.Since(t.start)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
