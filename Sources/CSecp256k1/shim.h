// libsecp256k1 from Debian's libsecp256k1-dev (found through pkg-config).
// If this include fails: apt-get install libsecp256k1-dev pkg-config
#include <secp256k1.h>
#include <secp256k1_ecdh.h>
