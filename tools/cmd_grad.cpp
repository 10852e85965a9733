// `lowbit grad OP ...`: placeholder until the grad command lands.
#include "core/error.h"
#include "tools/commands.h"

namespace lowbit {
int cmd_grad(int, char**) { LB_FAIL("grad: not implemented yet"); }
}  // namespace lowbit
