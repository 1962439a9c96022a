/*
 * formats.h - the reply formats of the model operations and how a request
 * picks one.
 *
 *   png     one PNG (a grid for n > 1): sample, decode, reconstruct
 *   json    JSON with numbers, images as base64 PNGs: every operation
 *   pixels  JSON with images as arrays of floats in [0, 1]: sample, decode,
 *           reconstruct
 *   npy     a NumPy .npy file of float32 (npy.h): images (n, H, W, C),
 *           encode's latents (n, d), logp's log p (n,)
 *
 * The format parameter wins; without one, an Accept header that names
 * application/x-npy or application/octet-stream asks for npy, since a
 * client that says it wants binary cannot use JSON text; anything else
 * gets the operation's default.
 */
#ifndef GM_FORMATS_H
#define GM_FORMATS_H

#include "gm/error.h"
#include "gm/model.h"

typedef enum { GM_FORMAT_JSON, GM_FORMAT_PNG, GM_FORMAT_PIXELS, GM_FORMAT_NPY, GM_FORMAT_COUNT } gm_format;

#define GM_FORMAT_BIT(f) (1u << (f))
#define GM_FORMATS_IMAGES                                                                                              \
    (GM_FORMAT_BIT(GM_FORMAT_JSON) | GM_FORMAT_BIT(GM_FORMAT_PNG) | GM_FORMAT_BIT(GM_FORMAT_PIXELS) |                  \
     GM_FORMAT_BIT(GM_FORMAT_NPY))
#define GM_FORMATS_NUMBERS (GM_FORMAT_BIT(GM_FORMAT_JSON) | GM_FORMAT_BIT(GM_FORMAT_NPY))

extern const char *const gm_format_names[GM_FORMAT_COUNT];

/* The formats op replies in (a set of GM_FORMAT_BIT) and its default. */
unsigned gm_formats_of(gm_op op);
gm_format gm_format_default(gm_op op, bool get);

/* The reply format. param: the format parameter's text, or NULL when the
 * request has none; accept: the Accept header, or NULL; allowed: a set of
 * GM_FORMAT_BIT. Returns 0, or -1 with err saying which values the
 * operation takes (param names none of them). */
int gm_format_choose(const char *param, const char *accept, unsigned allowed, gm_format dflt, gm_format *out,
                     char err[GM_ERR_LEN]);

/* The Content-Type of an npy reply: application/octet-stream when that is
 * what Accept asked for (and not application/x-npy), else application/x-npy. */
const char *gm_format_npy_type(const char *accept);

#endif
