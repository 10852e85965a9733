// The quantizer ops runnable by `lowbit grad` (LSQ, LSQ+, PACT, DoReFa, ...): each quantizer adds
// its RegisteredOp here, so that its STE gradients can be audited from .npy files against a
// reference. Empty until the quantizers land; tools/grad_ops_core.cpp shows the pattern.
#include "core/op_registry.h"

namespace lowbit {

void add_quant_grad_ops(std::vector<RegisteredOp>& table) {}

}  // namespace lowbit
