/**
 * The dirty-memory test guest: a tiny Multiboot kernel, assembled by the project's own
 * x86 encoder, that dirties guest RAM at a chosen rate so live migrations have real work.
 * @packageDocumentation
 */
export * from './image.js';
export * from './x86.js';
