/* error - messages and kinds of the core's error codes */
#include "concur/error.h"

static const char *const messages[] = {
    "success",
#define CC__ERR_MSG(name, kind, msg) msg,
    CC_ERRNO_MAP(CC__ERR_MSG)
#undef CC__ERR_MSG
};

static const char *const kinds[] = {
    "None",
#define CC__ERR_KIND(name, kind, msg) kind,
    CC_ERRNO_MAP(CC__ERR_KIND)
#undef CC__ERR_KIND
};

const char *cc_strerror(int err) {
  if (err > 0 || -err >= CC__I_COUNT)
    return "unknown error";
  return messages[-err];
}

const char *cc_errkind(int err) {
  if (err > 0 || -err >= CC__I_COUNT)
    return kinds[-CC_ESYS];
  return kinds[-err];
}
