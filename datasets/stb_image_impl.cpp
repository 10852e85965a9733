// The one definition of stb_image (Debian's libstb-dev header). Its own code is not ours to fix,
// so its warnings are silenced here and only here. Only the formats we list are compiled in.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_HDR
#define STBI_NO_PIC
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
