// Debian's libcrypt (libxcrypt, libcrypt-dev): crypt_r for the password formats nginx hands to the C
// library ($1$, $5$, $6$, $y$, DES), as ngx_libc_crypt does.
#ifndef VIGIL_CCRYPT_SHIM_H
#define VIGIL_CCRYPT_SHIM_H
#include <crypt.h>
#endif
