/*
 * floatfmt.h - the shortest decimal text of a 32-bit float that reads back
 * as the same float, for the large float arrays of JSON replies.
 *
 * printf("%.17g") costs about a microsecond per number (glibc formats the
 * exact binary value with big-number arithmetic); replies of latents hold
 * dozens to thousands of them. A float32 needs at most 9 significant digits
 * to round-trip, and usually the fewest digits that do are what a reader
 * expects (0.1f prints as 0.1, not 0.100000001).
 */
#ifndef GM_FLOATFMT_H
#define GM_FLOATFMT_H

enum { GM_FLOAT_CHARS = 24 }; /* room for any output and its NUL */

/* Writes x (finite) into out as a JSON number with the fewest significant
 * digits that parse back (round to nearest, as strtof does) to exactly x,
 * the nearest such decimal when several have that many; NUL-terminated.
 * Returns the length. Integral values in fixed notation end in ".0" so that
 * JSON readers keep them real; -0 is "-0.0". Notation: fixed for
 * 1e-5 <= |x| < 1e9, else d.ddde[-]N. */
int gm_float_shortest(float x, char out[GM_FLOAT_CHARS]);

#endif
