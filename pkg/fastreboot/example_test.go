package fastreboot_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// printLoader stands in for kexec_file_load.
type printLoader struct{}

func (printLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	fmt.Printf("kexec_file_load(kernel, initrd, %q)\n", cmdline)
	return nil
}

func ExampleMachine_Stage() {
	dir, err := os.MkdirTemp("", "fastreboot-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A boot image on storage: a kernel, three initrd pieces, a manifest.
	if _, _, err := testimage.Default().Write(dir); err != nil {
		log.Fatal(err)
	}

	// The cache checks every module once, as it enters.
	cache := modcache.New(modcache.Options{Check: bootimage.CheckModule})
	defer cache.Close()
	m := fastreboot.New(cache, fastreboot.Options{
		Loader: printLoader{}, // the default calls kexec_file_load
	})

	for _, reason := range []fastreboot.Reason{fastreboot.ReasonUpdate, fastreboot.ReasonManual} {
		rep, err := m.StageFile(context.Background(), filepath.Join(dir, "manifest.json"), fastreboot.StageOptions{
			Reason:     reason,
			Generation: 1, // from Resume
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("staged generation %d (%s): %d modules read, %d cached, %d carried\n",
			rep.Generation, rep.Reason, rep.Sync.Misses, rep.Sync.Hits, rep.CarriedModules)
	}
	// Output:
	// kexec_file_load(kernel, initrd, "console=ttyS0 quiet")
	// staged generation 2 (update): 4 modules read, 0 cached, 4 carried
	// kexec_file_load(kernel, initrd, "console=ttyS0 quiet")
	// staged generation 2 (manual): 0 modules read, 4 cached, 4 carried
}

func ExampleResume() {
	root, err := os.MkdirTemp("", "fastreboot-root")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	cache := modcache.New(modcache.Options{Check: bootimage.CheckModule})
	defer cache.Close()

	// Early in boot: read the handoff the previous generation carried, if
	// any, and rehydrate the cache from it.
	st, err := fastreboot.Resume(context.Background(), cache, fastreboot.ResumeOptions{
		Root:     root,                       // "/" in the real system
		StateDir: filepath.Join(root, "run"), // DefaultStateDir in the real system
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("generation %d, reason %s, %d modules rehydrated\n", st.Generation, st.Reason, st.Rehydrated.Modules)

	// A status command, in another process, reads the saved state.
	saved, err := fastreboot.LoadState(filepath.Join(root, "run"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("saved generation:", saved.Generation)
	// Output:
	// generation 1, reason cold, 0 modules rehydrated
	// saved generation: 1
}
