/**
 * The QEMU monitor clients: QMP, HMP, their parsers and the transport seam.
 * @packageDocumentation
 */
export * from './event-types.js';
export * from './events.js';
export * from './hmp.js';
export * from './hmp-parser.js';
export * from './qmp.js';
export * from './qmp-parser.js';
export * from './transport.js';
export type * from './types.js';
