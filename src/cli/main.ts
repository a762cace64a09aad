#!/usr/bin/env node
/** Placeholder entry point of the `kvm-hv` command; replaced by the CLI issue. */
console.log('kvm-hv: not implemented yet');
