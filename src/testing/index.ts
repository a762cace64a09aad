/**
 * Test helpers for users of kvm-hypervisor: `kvm-hypervisor/testing`.
 * @packageDocumentation
 */
export {};
