package harness

import "testing"

func TestSummarizeRegisters(t *testing.T) {
	dump := `CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000
RIP=000000007fffd0c3 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
CR0=80050033 CR2=0000000000000000 CR3=000000007ffdb000 CR4=000006b0
CPU#1
EAX=00000000 EBX=00000000 ECX=00000000 EDX=00060fb1
EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1
CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
`
	want := "CPU#0 RIP=000000007fffd0c3 CPL=0 HLT=0 CR0=80050033 CR3=000000007ffdb000; CPU#1 EIP=0000fff0 CPL=0 HLT=1 CR0=60000010 CR3=00000000"
	if got := summarizeRegisters(dump); got != want {
		t.Errorf("summarizeRegisters =\n%s\nwant\n%s", got, want)
	}
	if got := summarizeRegisters("Error: no VM"); got != `no vCPU in QEMU's answer "Error: no VM"` {
		t.Errorf("summarizeRegisters of no dump = %q", got)
	}
}
