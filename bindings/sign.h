/* sign - the run's signature on the bytecode that travels in messages */
#ifndef CONCUR_SIGN_H
#define CONCUR_SIGN_H

#include <stddef.h>
#include <stdint.h>

/* The signature of n bytes under the run's secret (cc_arena_secret: known
 * to every process of the run and to nobody else): the codec loads a
 * function's bytecode only when its signature is this. */
uint64_t cc__lsign(const void *bytes, size_t n);

#endif
