/*
 * cove kvm guest stub: the only code that runs in the guest besides the
 * guest program itself. Assembled by `python -m cove.platform.kvm.build_stub`
 * into _stub_bin.py (bytes + symbol offsets); tests check the two agree.
 *
 * Two pages, both mapped in the kernel half and never guest-writable:
 *   page 0 (LSTAR page): the syscall entry. On hardware KVM `syscall` lands
 *     here at CPL 0 and the page is supervisor-only. On kvm_pvm without the
 *     PVM ABI `syscall` lands here still at CPL 3, so the page is user-
 *     executable (read-only); the TSS I/O bitmap lets CPL 3 use PORT_SYSCALL.
 *   page 1 (kernel page): exception entries (reached through the IDT at
 *     CPL 0 on the TSS RSP0 stack) and the return-to-user path.
 *
 * Nothing here saves registers to memory: every exit is an `out` with all
 * user GPRs still live, and the host reads them through KVM's sync-regs
 * area in kvm_run (no KVM_GET_REGS). On kvm_pvm every CPL 0 instruction is
 * emulated (~1.3 us each), so each path is as short as it can be.
 *
 * The host never lets execution fall through an `out`: after each exit it
 * sets rip itself (to the user return address, or to resume*), so the
 * `ud2` after each `out` is a tripwire, not a path.
 */
	.set PORT_SYSCALL, 0xC0		/* a syscall: registers are the user's */
	.set PORT_EXC_BASE, 0xE0	/* + vector: an exception at CPL 0 */

	.text
	.code64
	.globl stub_start
stub_start:

/* ---------------- page 0: LSTAR page ---------------- */
	.globl syscall_entry, syscall_entry_end
syscall_entry:
	outb %al, $PORT_SYSCALL
syscall_entry_end:
	ud2

	/* The host starts each new vCPU here at CPL 3 once, and looks at CS
	 * at the resulting PORT_SYSCALL exit to learn which syscall path this
	 * hypervisor has. */
	.balign 64, 0xcc
	.globl probe
probe:
	syscall
	ud2

	.balign 4096, 0xcc
/* ---------------- page 1: kernel page ---------------- */
	.globl kernel_page
kernel_page:

/* Exception entries. The CPU has pushed (from CPL 3, on RSP0):
 *   ss, rsp, rflags, cs, rip [, error code]
 * and the host reads that frame at its fixed place under RSP0. */
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign 8, 0xcc
	.globl vec_\v
vec_\v:
	outb %al, $(PORT_EXC_BASE + \v)
	ud2
	.endr

/* #PF also needs CR2, which only CPL 0 can read: hand it over in rax and
 * keep the user's rax on the stack, under the error code. */
	.balign 8, 0xcc
	.globl vec_14
vec_14:
	pushq %rax
	movq %cr2, %rax
	outb %al, $(PORT_EXC_BASE + 14)
	ud2

/* Return to user mode. The host writes the iret frame (rip, cs, rflags,
 * rsp, ss) under RSP0 and the user's rax just below it, sets every other
 * GPR through sync regs, and points rip here:
 *   resume_flush: reload CR3 first (flushes the guest TLB; host changed PTEs)
 *   resume_pop:   rsp -> saved rax
 *   resume:       rsp -> iret frame, rax already the user's */
	.balign 8, 0xcc
	.globl resume_flush, resume_pop, resume
resume_flush:
	movq %cr3, %rax
	movq %rax, %cr3
resume_pop:
	popq %rax
resume:
	iretq
	ud2

	.globl stub_end
stub_end:
