package qemutests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// daemonTookRE matches frguest's line once the daemon's socket exists.
var daemonTookRE = regexp.MustCompile(`frguest: daemon=started pid=\d+ socket=\S+ took=([0-9.]+)s`)

// adoptionRound is one update reboot of TestCarriedCacheAdoption.
type adoptionRound struct {
	eager bool
	// daemon is frguest's daemon start -> socket ready; userToReady the
	// new userspace's first line -> FRGUEST_READY (module loading
	// included); rehydrate is Resume's copy (and, eager, hashing) of the
	// carried modules; verify the background hashing (lazy).
	daemon, userToReady, rehydrate, verify time.Duration
	unverified                             int
}

// TestCarriedCacheAdoption measures what deferring the verification of the
// carried cache buys: update reboots of the same image on one VM,
// alternating the daemon's default (adopt the carried modules unverified,
// verify them in the background at nice 19) with the old eager hashing
// inside Resume (the hidden fastreboot.verify_carried=eager word on the
// next kernel's command line). It logs, per mode, frguest's daemon start ->
// socket ready and Resume's time, and checks what each mode must show:
// lazy adopts every carried module unverified and verifies them all
// afterwards, eager adopts none unverified. It asserts no timing.
func TestCarriedCacheAdoption(t *testing.T) {
	s := prepare(t, scenario.Options{})
	vm, _ := harness.StartBootT(t, s.VMOptions(), 3*time.Minute)
	g := &scenario.Guest{VM: vm}
	m := scenario.MountPoint + "/"
	eagerStage := "fastreboot stage --name v1-eager --append fastreboot.verify_carried=eager --kernel " + m + scenario.KernelFile +
		" --initrd " + m + scenario.BaseFile + " --initrd " + m + scenario.KmodsFile + " --initrd " + m + scenario.SiteV1File
	lazyStage := "fastreboot stage " + m + scenario.ManifestV1

	var rounds []adoptionRound
	for i, eager := range []bool{false, true, false, true, false, true} {
		if err := g.MountStorage(); err != nil {
			t.Fatal(err)
		}
		stage := lazyStage
		if eager {
			stage = eagerStage
		}
		if _, err := g.Run(stage); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		from := vm.Console().Cursor()
		r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if r.Boot.Daemon != "started" {
			t.Fatalf("round %d: daemon %q", i, r.Boot.Daemon)
		}
		round := adoptionRound{eager: eager, userToReady: r.Boot.ReadyAt - r.Boot.StartAt}
		sm := daemonTookRE.FindStringSubmatch(vm.Console().Since(from))
		if sm == nil {
			t.Fatalf("round %d: no %q line after the reboot", i, daemonTookRE)
		}
		took, _ := strconv.ParseFloat(sm[1], 64)
		round.daemon = time.Duration(took * float64(time.Second))

		st := guestStatus(t, g)
		if st.State == nil || st.Agent == nil {
			t.Fatalf("round %d: status without state or daemon: %+v", i, st)
		}
		carried := st.State.Carried
		round.rehydrate, round.unverified = st.State.RehydrateTime, st.State.Rehydrated.Unverified
		if carried == 0 || st.State.Rehydrated.Modules != carried || st.State.RehydrateError != "" {
			t.Errorf("round %d: carried %d, rehydrated %+v, error %q", i, carried, st.State.Rehydrated, st.State.RehydrateError)
		}
		want := carried
		if eager {
			want = 0
		}
		if round.unverified != want {
			t.Errorf("round %d (eager %v): %d modules adopted unverified, want %d", i, eager, round.unverified, want)
		}
		// `cache ls` waits for the background verification.
		var ls cli.CacheLsV1
		if err := g.FastrebootJSON("cache ls", &ls); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		a := ls.Stats.Adoption
		if a.Modules != want || a.Verified != want || a.Pending != 0 || a.Failed != 0 {
			t.Errorf("round %d: adoption after cache ls %+v, want %d verified", i, a, want)
		}
		round.verify = a.VerifyTime
		t.Logf("round %d (%s): daemon start -> socket %.2fs, userspace -> READY %.2fs, Resume %.3fs (%d unverified), background verify %.3fs, status said pending=%d verified=%d",
			i, mode(eager), round.daemon.Seconds(), round.userToReady.Seconds(), round.rehydrate.Seconds(), round.unverified, round.verify.Seconds(),
			st.Agent.Cache.Adoption.Pending, st.Agent.Cache.Adoption.Verified)
		rounds = append(rounds, round)
	}

	var b strings.Builder
	for _, eager := range []bool{true, false} {
		var daemon, ready, rehydrate, verify []time.Duration
		for _, r := range rounds {
			if r.eager == eager {
				daemon, ready, rehydrate, verify = append(daemon, r.daemon), append(ready, r.userToReady), append(rehydrate, r.rehydrate), append(verify, r.verify)
			}
		}
		fmt.Fprintf(&b, "\n  %-5s (%d reboots): daemon start -> socket ready %s s, userspace start -> READY %s s, Resume %s s, background verification %s s",
			mode(eager), len(daemon), scenario.Stats(daemon), scenario.Stats(ready), scenario.Stats(rehydrate), scenario.Stats(verify))
	}
	t.Logf("carried cache adoption, median [min-max]:%s", b.String())
}

func mode(eager bool) string {
	if eager {
		return "eager"
	}
	return "lazy"
}
