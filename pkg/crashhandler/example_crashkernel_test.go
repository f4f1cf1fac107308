package crashhandler_test

import (
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// A manifest made with `fastreboot manifest create` has no crashkernel=;
// the image staged from it keeps the running system's, so the generation
// it boots can re-arm the crash path.
func ExampleInheritCrashkernel() {
	running := "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda ro crashkernel=384M"
	fmt.Println(crashhandler.InheritCrashkernel("console=ttyS0 quiet", running))
	fmt.Println(crashhandler.InheritCrashkernel("console=ttyS0 crashkernel=512M", running))
	// Output:
	// console=ttyS0 quiet crashkernel=384M
	// console=ttyS0 crashkernel=512M
}

// The range form is evaluated against the machine's RAM, as the kernel
// does.
func ExampleParseCrashkernel() {
	ck, err := crashhandler.ParseCrashkernel("root=/dev/vda crashkernel=1G-4G:192M,4G-:256M", 2<<30)
	fmt.Println(ck.Word, ck.Size>>20, err)
	// Output: crashkernel=1G-4G:192M,4G-:256M 192 <nil>
}
