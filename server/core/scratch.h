/*
 * scratch.h - per-thread scratch buffers that live as long as the thread
 * (internal).
 *
 * A batch's activations are megabytes; allocating them per call gives fresh
 * pages, and touching a fresh page costs a fault: measured 455k faults in 40
 * batch-256 GAN samples, about half of the time outside sgemm. Each thread
 * instead keeps GM_SCRATCH_SLOTS buffers that only grow, so a worker reaches
 * its peak once and reuses it. Contents are undefined on return; a buffer is
 * valid until the same thread asks for the same slot again.
 */
#ifndef GM_SCRATCH_H
#define GM_SCRATCH_H

#include <stddef.h>

/* Slots 0-3: a forward pass's activations and im2col / col2im buffers;
 * 4: one sample's channels-last output in conv_transpose2d's col2im;
 * 5: the autoregressive sampler's activations for one block of rows. */
enum { GM_SCRATCH_SLOTS = 6 };

/* The calling thread's buffer `slot` with room for n floats, or NULL when
 * memory runs out. */
float *gm_scratch(int slot, size_t n);

#endif
