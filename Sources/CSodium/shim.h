// libsodium from Debian's libsodium-dev (found through pkg-config).
// If this include fails: apt-get install libsodium-dev pkg-config
#include <sodium.h>
