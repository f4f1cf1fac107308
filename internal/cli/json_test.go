package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootentry"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

var update = flag.Bool("update", false, "rewrite testdata/json (TestJSONGolden) and the reference of docs/json.md (TestJSONDoc) from the current output")

// goldenDir holds one golden file per --json document, named after its
// schema: testdata/json/status.v1.json is "fastreboot.status.v1".
var goldenDir = filepath.Join("..", "..", "testdata", "json")

// filler fills a library value with a value in every field, so that a
// golden file shows every field of its document. The values are those of
// a real system where the field's name says what it holds (fillValues), a
// distinct number or name otherwise.
type filler struct{ n int }

// fixed values for the library's named string types, so that the golden
// files read like real output.
var fillStrings = map[reflect.Type]string{
	reflect.TypeFor[fastreboot.Reason]():       string(fastreboot.ReasonUpdate),
	reflect.TypeFor[fastreboot.LoadMethod]():   string(fastreboot.LoadSegments),
	reflect.TypeFor[crashhandler.Mode]():       string(crashhandler.ModeTwoStage),
	reflect.TypeFor[crashhandler.LoadMethod](): string(crashhandler.LoadSegments),
	reflect.TypeFor[crashpath.Initrd]():        string(crashpath.InitrdMinimal),
	reflect.TypeFor[bootimage.Role]():          string(bootimage.RoleKernel),
	reflect.TypeFor[bootentry.Source]():        string(bootentry.SourceBLS),
	reflect.TypeFor[cpustop.Policy]():          string(cpustop.PolicyHotplug),
	reflect.TypeFor[rollback.Action]():         string(rollback.ActionRollback),
}

// fillBase is when the generation the documents describe staged its image.
var fillBase = time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)

// fillValues are realistic values by field, "Type.Field" before "Field":
// strings, int64 for any integer, uint64 for addresses, time.Duration for
// durations and, for times, the offset from fillBase. They describe a QEMU
// guest with 2 GiB and crashkernel=384M running Debian's 6.1 kernel,
// generation 2, staging manifest v2 (four modules) with the segments load
// method.
var fillValues = map[string]any{
	// Names, paths, command lines.
	"Manifest":             "v2",
	"Current":              "v2",
	"Name":                 "v2",
	"Module.Name":          "vmlinuz",
	"SegmentInfo.Name":     "kernel",
	"Check.Name":           "kexec_file_load",
	"FaultStatus.Name":     "kernel.panic_on_oops",
	"Path":                 "/boot/fr/v2.json",
	"ManifestPath":         "/boot/fr/v2.json",
	"Source":               "/boot/fr/vmlinuz-6.1.0-28-amd64",
	"Evidence.Source":      "vmcore",
	"Cmdline":              "console=ttyS0 root=/dev/vda1 ro quiet crashkernel=384M",
	"NextCmdline":          "console=ttyS0 root=/dev/vda1 ro quiet crashkernel=384M memmap=exactmap memmap=639K@0x0 memmap=2095996K@0x100000",
	"Names":                "vmlinuz",
	"Read":                 "site-v2.cpio.zst",
	"Added":                "site-v2.cpio.zst",
	"Removed":              "site-v1.cpio.zst",
	"Changed":              "kmods.cpio.zst",
	"Bad":                  "site-v1.cpio.zst",
	"Warnings":             "kmods.cpio.zst: read 41 ms slower than the last sync",
	"Failures":             "site-v1.cpio.zst: digest mismatch",
	"Problems":             "cpu3 (apic 3) did not come back",
	"Entry.Kernel":         "/boot/vmlinuz-6.1.0-28-amd64",
	"Initrds":              "/boot/initrd.img-6.1.0-28-amd64",
	"Title":                "Debian GNU/Linux, with Linux 6.1.0-28-amd64",
	"Entry.Version":        "6.1.0-28-amd64",
	"Entry.ID":             "debian-6.1.0-28-amd64",
	"Config":               "/boot/loader/entries/debian-6.1.0-28-amd64.conf",
	"DefaultReason":        "loader.conf default debian-*",
	"RebootPath":           "systemd",
	"Origin":               "storage",
	"Verification":         "verified",
	"State":                "ready",
	"Type":                 "System RAM",
	"MatchedBy":            "apic_id",
	"Online":               "0-3",
	"Lockdown":             "none",
	"Detail":               "available (probed with an unload)",
	"Why":                  "crash kernel reservation (/proc/iomem)",
	"Breakdown":            "the larger of kexec_load segments 94 MiB (armed) and, at the crash stage's peak, crash kernel runtime 96 MiB + reloading the production image 110 MiB",
	"Crashkernel":          "crashkernel=320M",
	"Word":                 "crashkernel=384M",
	"From":                 "armed",
	"MemoryMap":            "recorded",
	"MemoryMapFrom":        "handoff",
	"MemoryMapCheck":       "the crashed kernel's segments lie in the recorded map's RAM",
	"LoadFallback":         "lockdown forbids kexec_load: armed with kexec_file_load",
	"EvidenceFrom":         "vmcore",
	"ProductionKernel":     "compressed",
	"ProductionKernelWhy":  "production's decompressed kernel in the crashed kernel's memory: oldmem.moved: the mapped bytes do not match sha256 1c3f5e0b9a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6",
	"EvidenceError":        "pstore: no records",
	"PstoreBackend":        "ramoops",
	"KernelUptime":         "41.20",
	"KernelRelease":        "6.1.0-28-amd64",
	"Evidence.Reason":      "Kernel panic - not syncing: sysrq triggered crash",
	"Cause":                "sysrq: Trigger a crash",
	"Log":                  "sysrq: Trigger a crash",
	"Value":                "1",
	"Previous":             "0",
	"Previous_key":         "kernel.panic_on_oops",
	"Previous_value":       "0",
	"Error":                "site-v1.cpio.zst: digest mismatch",
	"RehydrateError":       "",
	"Carrier":              "kept",
	"CarrierWarning":       "",
	"Device":               "/dev/pmem0",
	"keptPlanReport.Words": "memmap=320M!0x40000000",
	"DeviceError":          "",
	"IndexError":           "",
	"CacheSize":            int64(62 << 20),
	"Sequence":             uint64(3),
	"CPUsError":            "cpu3 (apic 3) did not come back",
	"RunningError":         "manifest v1 is not signed",
	"Root":                 "/etc/fastreboot/trust",
	"Keys":                 "9f3c2a1b0d4e5f60",
	"KeyID":                "9f3c2a1b0d4e5f60",
	"SignedBy":             "9f3c2a1b0d4e5f60",
	"RunningSignedBy":      "9f3c2a1b0d4e5f60",
	"Algorithm":            "ed25519",
	"Signature":            int64(0x5c),
	"Manifest_byte":        int64(0x7b),
	// The boot assessment: generation 2 runs v2 on trial, v1 is
	// last-known-good.
	"PreviousBoot.BootID":   "3f1e2d7c-9a4b-4e2f-8c1d-5b6a7e8f9012",
	"PreviousBoot.Panic":    "sysrq: Trigger a crash; Kernel panic - not syncing: sysrq triggered crash",
	"Image.ID":              "5d41402abc4b2a76",
	"Image.Generation":      int64(1),
	"Image.By":              "bless",
	"Trial.ID":              "7c6a180b36896a0a",
	"TrialOptions.Health":   "/usr/local/bin/healthcheck",
	"HealthStatus.Command":  "/usr/local/bin/healthcheck",
	"HealthStatus.State":    "failed",
	"HealthStatus.ExitCode": int64(1),
	"HealthStatus.Error":    `"/usr/local/bin/healthcheck": exit status 1`,
	"HealthStatus.Output":   "curl: (7) Failed to connect to localhost port 8080",
	"Event.Reason":          "update",
	"Event.Image":           "v2@7c6a180b36896a0a",
	"Event.Note":            "on trial; last-known-good v1@5d41402abc4b2a76",
	"Decision.Why":          "generation 2 runs v2@7c6a180b36896a0a on trial: a crash rolls back to last-known-good v1@5d41402abc4b2a76",
	"RollingBack":           `health command failed: "/usr/local/bin/healthcheck": exit status 1`,
	"RollbackReport.Why":    "asked by an operator",
	"BlessReport.Warnings":  "re-arming the crash path with the blessed image: crash arm: no crashkernel= reservation",
	"MaxCrashes":            int64(3),
	// Counts and generations.
	"Generation":        int64(2),
	"Version":           int64(2),
	"Manifest.Version":  int64(1),
	"Modules":           int64(4),
	"Carried":           int64(4),
	"CarriedModules":    int64(4),
	"CarriedLost":       int64(0),
	"Hits":              int64(3),
	"Misses":            int64(1),
	"Unverified":        int64(4),
	"Pending":           int64(0),
	"Verified":          int64(4),
	"Failed":            int64(0),
	"Expected":          int64(4),
	"Report.Online":     int64(4),
	"RebootPlan.Mode":   "kexec",
	"Evidence.Problems": "no pstore records: the log comes from /proc/vmcore",
	"ID":                int64(3),
	"APICID":            int64(3),
	"BootCPU":           int64(0),
	"BootAPICID":        int64(0),
	"CPU":               int64(2),
	"PID":               int64(412),
	"Note":              int64(0x7dc17000),
	"LogLines":          int64(38),
	"E820Entries":       int64(7),
	"CmdlineBytes":      int64(54),
	"Default":           int64(0),
	// Preserved areas: a 320 MiB kept region at 1 GiB, its last 258 MiB
	// for areas (fastreboot.preserve=258M), one area of 256 MiB.
	"Location.Device":             "/dev/pmem0",
	"Region.Start":                uint64(0x40000000),
	"Region.Size":                 uint64(320 << 20),
	"Layout.CacheSize":            int64(62 << 20),
	"Layout.AreasSize":            int64(258 << 20),
	"Area.Name":                   "state",
	"Area.Offset":                 int64(62<<20 + 64<<10),
	"Area.Size":                   int64(256 << 20),
	"Area.Cgroup":                 "/work",
	"Area.Generation":             int64(1),
	"preserveListing.Free":        int64(2<<20 - 64<<10),
	"preserveListing.LargestFree": int64(2<<20 - 64<<10),
	// Sizes in bytes.
	"Size":             int64(8222656),
	"KernelELF.Size":   int64(65905112),
	"Crashkernel.Size": int64(384 << 20),
	"Bytes":            int64(26387912),
	"BytesHeld":        int64(100007392),
	"OverheadBytes":    int64(20480),
	"BytesRead":        int64(6291456),
	"BytesAdded":       int64(65905112),
	"BytesRehydrated":  int64(34099936),
	"CarriedBytes":     int64(34099936),
	"CopiedInKernel":   int64(26214400),
	"CopiedInUser":     int64(173512),
	"HandoffBytes":     int64(17307428),
	"InitrdBytes":      int64(26387912),
	"PiecesBytes":      int64(9076736),
	"PaddingBytes":     int64(3748),
	"ImageBytes":       int64(34610568),
	"KernelBytes":      int64(8222656),
	"Load":             int64(98566144),
	"Runtime":          int64(100663296),
	"Reload":           int64(115343360),
	"Total":            int64(335544320),
	"ReservationBytes": int64(402653184),
	// Physical addresses.
	"Entry":            uint64(0x75ffd000),
	"KernelEntry":      uint64(0x1000200),
	"BootParams":       uint64(0x75ffb000),
	"KernelStart":      uint64(0x1000000),
	"KernelEnd":        uint64(0x4f98000),
	"Phys":             uint64(0x1000000),
	"SegmentInfo.Size": uint64(0x3f98000),
	"Start":            uint64(0x5e000000),
	"End":              uint64(0x76000000),
	"MemoryMapRAM":     uint64(2146958336),
	"IP":               uint64(0xffffffff8159c0a6),
	// Durations.
	"Took":           1840 * time.Millisecond,
	"Sync":           212 * time.Millisecond,
	"Validate":       38 * time.Millisecond,
	"Segments":       46560 * time.Millisecond,
	"Assemble":       291 * time.Millisecond,
	"Handoff":        24 * time.Millisecond,
	"Durations.Load": 1945 * time.Millisecond,
	"Total_dur":      57786 * time.Millisecond,
	"DecompressTime": 46560 * time.Millisecond,
	"RehydrateTime":  175 * time.Millisecond,
	"VerifyTime":     612 * time.Millisecond,
	"EvidenceAt":     310 * time.Millisecond,
	"Window":         15 * time.Minute,
	"Deadline":       10 * time.Minute,
	"HealthTimeout":  2 * time.Minute,
	// Times, as offsets from fillBase.
	"StageStart_t":      time.Duration(0),
	"StageEnd_t":        57786 * time.Millisecond,
	"RebootRequested_t": 65 * time.Second,
	"KernelStart_t":     71550 * time.Millisecond,
	"Started_t":         81 * time.Second,
	"Resumed_t":         82230 * time.Millisecond,
	"ArmedAt_t":         95 * time.Second,
	"Restarted_t":       time.Duration(0),
	"Time_t":            240 * time.Second,
	"Since_t":           57786 * time.Millisecond,
	"Deadline_t":        681 * time.Second,
	"Crashes_t":         240 * time.Second,
	"LoopEnds_t":        1140 * time.Second,
	"At_t":              57786 * time.Millisecond,
}

// fillValue returns the realistic value of field in parent (see
// fillValues); suffix distinguishes a field name used for several kinds.
func fillValue(parent, field, suffix string) (any, bool) {
	if v, ok := fillValues[parent+"."+field+suffix]; ok {
		return v, true
	}
	if v, ok := fillValues[parent+"."+field]; ok && suffix == "" {
		return v, true
	}
	v, ok := fillValues[field+suffix]
	return v, ok
}

func (f *filler) fill(v reflect.Value, parent, name string, depth int) {
	if depth > 12 {
		return
	}
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		f.n++
		at := fillBase.Add(time.Duration(f.n) * time.Second)
		if d, ok := fillValue(parent, name, "_t"); ok {
			at = fillBase.Add(d.(time.Duration))
		}
		v.Set(reflect.ValueOf(at))
		return
	case reflect.TypeFor[time.Duration]():
		f.n++
		d := time.Duration(f.n) * time.Millisecond
		if x, ok := fillValue(parent, name, ""); ok {
			if x, ok := x.(time.Duration); ok {
				d = x
			}
		}
		if x, ok := fillValue(parent, name, "_dur"); ok {
			d = x.(time.Duration)
		}
		v.SetInt(int64(d))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s, ok := fillStrings[v.Type()]; ok {
			v.SetString(s)
		} else if x, ok := fillValue(parent, name, ""); ok {
			if s, ok := x.(string); ok {
				v.SetString(s)
			} else {
				v.SetString(fmt.Sprint(x))
			}
		} else if isDigest(name) {
			f.n++
			v.SetString(fillDigest(name, f.n))
		} else {
			v.SetString(strings.ToLower(name))
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f.n++
		n := int64(f.n)
		if x, ok := fillValue(parent, name, ""); ok {
			if x, ok := x.(int64); ok {
				n = x
			}
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f.n++
		n := uint64(f.n) << 12
		if x, ok := fillValue(parent, name, ""); ok {
			switch x := x.(type) {
			case uint64:
				n = x
			case int64:
				n = uint64(x)
			}
		}
		if v.Kind() == reflect.Uint8 {
			n &= 0xff
		}
		v.SetUint(n)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), parent, name, depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		f.fill(s.Index(0), parent, name, depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		f.fill(k, parent, name+"_key", depth+1)
		f.fill(e, parent, name+"_value", depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i), v.Type().Name(), v.Type().Field(i).Name, depth+1)
			}
		}
	}
}

// isDigest tells whether a string field holds a SHA-256 digest.
func isDigest(name string) bool {
	switch name {
	case "SHA256", "KernelSHA256", "Digest", "Kernel":
		return true
	}
	return false
}

// fillDigest is a SHA-256 digest, distinct for each n.
func fillDigest(name string, n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s %d", name, n)))
	return hex.EncodeToString(sum[:])
}

// filled returns a T with every field set.
func filled[T any]() *T {
	var v T
	(&filler{}).fill(reflect.ValueOf(&v).Elem(), "", reflect.TypeFor[T]().Name(), 0)
	return &v
}

// jsonDocs returns every --json document, each built from library values
// with every field set.
func jsonDocs() map[string]any {
	status := filled[statusReport]()
	// status fills its v1 boot assessment from the daemon's answer.
	status.Rollback = rollbackInfoV1Ptr(status.Agent.Rollback)
	diff := filled[bootimage.ManifestDiff]()
	return map[string]any{
		schemaStatus:           statusDoc(status),
		schemaStage:            stageDoc(filled[fastreboot.StageReport]()),
		schemaReboot:           rebootDoc(*filled[fastreboot.RebootPlan]()),
		schemaCacheLs:          cacheLsDoc(filled[agent.CacheListing]()),
		schemaCacheVerify:      cacheVerifyDoc(filled[modcache.VerifyReport]()),
		schemaCacheSync:        cacheSyncDoc(filled[modcache.SyncReport]()),
		schemaCacheEvict:       cacheEvictDoc(filled[modcache.EvictReport]()),
		schemaManifestDiff:     manifestDiffDoc(*diff),
		schemaManifestValidate: manifestValidateDoc("/boot/fr/v2.json", 4, filled[modcache.SyncReport]()),
		schemaCrashArm:         crashArmDoc(filled[crashpath.ArmReport]()),
		schemaCrashEstimate:    crashEstimateDoc(filled[crashpath.EstimateReport]()),
		schemaCrashDisarm:      crashStatusDoc(schemaCrashDisarm, filled[crashpath.StatusReport]()),
		schemaCrashStatus:      crashStatusDoc(schemaCrashStatus, filled[crashpath.StatusReport]()),
		schemaCrashLast:        crashLastDoc(filled[crashhandler.Evidence]()),
		schemaCrashRecover:     crashRecoverDoc(filled[crashpath.RecoverReport]()),
		schemaEntries:          entriesDoc(filledEntries()),
		schemaPreserveLs:       preserveLsDoc(filled[preserveListing]()),
		schemaKeyVerify: keyVerifyDoc("/boot/fr/v2.json", &bootimage.Manifest{Name: "v2", Modules: make([]bootimage.Module, 3)},
			"9f3c2a1b0d4e5f60", manifestsig.NewTrustRoot("/etc/fastreboot/trust")),
		schemaBless:      blessDoc(filled[agent.BlessReport]()),
		schemaRollback:   rollbackDoc(filled[agent.RollbackReport]()),
		schemaKeptPlan:   keptPlanDoc(filled[keptPlanReport]()),
		schemaKeptStatus: keptStatusDoc(filled[keptStatusReport]()),
		schemaError:      errorDoc("stage", "stage /boot/fr/v2.json: vmlinuz: digest mismatch", []string{"modcache.digest_mismatch"}, ExitFailed),
	}
}

// goldenName is the file of a schema: "fastreboot.crash.arm.v1" ->
// "crash.arm.v1.json".
func goldenName(schema string) string {
	return strings.TrimPrefix(schema, "fastreboot.") + ".json"
}

// TestJSONGolden checks every --json document byte for byte against its
// golden file in testdata/json (go test -run TestJSONGolden -update
// rewrites them). A difference is a change of the contract: adding a field
// keeps the schema's version, anything else needs a new one (docs/json.md).
func TestJSONGolden(t *testing.T) {
	docs := jsonDocs()
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for schema, doc := range docs {
		t.Run(schema, func(t *testing.T) {
			var b bytes.Buffer
			if err := printJSON(&b, doc); err != nil {
				t.Fatal(err)
			}
			var head struct {
				Schema string `json:"schema"`
			}
			if err := json.Unmarshal(b.Bytes(), &head); err != nil || head.Schema != schema {
				t.Errorf("document's schema is %q (%v), want %q", head.Schema, err, schema)
			}
			path := filepath.Join(goldenDir, goldenName(schema))
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/cli -run TestJSONGolden -update writes it)", err)
			}
			if !bytes.Equal(want, b.Bytes()) {
				t.Errorf("%s differs from the output (-golden +output):\n%s", path, cmp.Diff(string(want), b.String()))
			}
		})
	}
	// No golden file without its document.
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		found := false
		for schema := range docs {
			found = found || goldenName(schema) == filepath.Base(f)
		}
		if !found {
			t.Errorf("%s: no --json document has this schema", f)
		}
	}
}

// TestJSONSchemasDocumented checks that docs/json.md names every schema.
func TestJSONSchemasDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for schema := range jsonDocs() {
		if !bytes.Contains(b, []byte("`"+schema+"`")) {
			missing = append(missing, schema)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/json.md does not document %q", missing)
	}
}

// filledEntries is a List with every field of its entries set: the filler
// cannot fill the error interfaces, so the broken entry's error and the
// problem are set here.
func filledEntries() *bootentry.List {
	l := filled[bootentry.List]()
	l.Default = 0
	bad := l.Entries[0]
	bad.ID, bad.Err = "bad", fmt.Errorf("bls entry %q (/boot/loader/entries/bad.conf): kernel /boot/vmlinuz-6.1.0-8-amd64: no such file or directory: %w", "bad", bootentry.ErrMissingFile)
	l.Entries = append(l.Entries, bad)
	l.Problems = []error{fmt.Errorf("/boot/loader/loader.conf: default %q matches no entry", "old-*")}
	return l
}

// TestJSONGoldenRealistic: the golden files read like real output, not
// like a form: no string is its own field's name ("why": "why"), and the
// digests are SHA-256 hex (fillValues).
func TestJSONGoldenRealistic(t *testing.T) {
	for schema, doc := range jsonDocs() {
		var b bytes.Buffer
		if err := printJSON(&b, doc); err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		var walk func(v any, key string)
		walk = func(v any, key string) {
			switch v := v.(type) {
			case map[string]any:
				for k, e := range v {
					walk(e, k)
				}
			case []any:
				for _, e := range v {
					walk(e, key)
				}
			case string:
				if strings.ReplaceAll(v, "_", "") == strings.ReplaceAll(key, "_", "") {
					t.Errorf("%s: %q is %q, a placeholder: add a real value to fillValues", schema, key, v)
				}
				if strings.HasSuffix(key, "sha256") || key == "digest" {
					if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
						t.Errorf("%s: %q is %q, not a SHA-256 digest", schema, key, v)
					}
				}
			}
		}
		walk(v, "")
	}
}
