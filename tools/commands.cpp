// `lowbit` dispatch, --version and --help.
#include "tools/commands.h"

#include <cstdio>
#include <cstring>

#include "core/cpu/blas.h"
#include "core/cuda/kernels.h"
#include "core/device_memory.h"
#include "core/parallel.h"
#include "core/error.h"

namespace lowbit {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"train", "train a model (CIFAR-10/100, image folders, synthetic)", cmd_train},
      {"eval", "evaluate a model checkpoint on a test split", cmd_eval},
      {"bench", "time training and eval steps of a model", cmd_bench},
      {"plot", "draw a run's loss and accuracy curves to PNG", cmd_plot},
      {"audit", "audit a quantized model's gradient estimators per quantizer node", cmd_audit},
      {"grad", "run one op forward and backward on .npy tensors (gradient auditing)", cmd_grad},
      {"bench-ops", "time conv2d/linear kernels at ResNet-20's shapes", cmd_bench_ops},
      {"info", "print a model's layer table: output shapes, parameters, MACs", cmd_info},
      {"export-data", "write a split's normalised images/labels as .npy (for PyTorch)", cmd_export_data},
  };
  return table;
}

std::string version_string() {
  std::string v = "lowbit 0.1.0";
  v += "\nblas: OpenBLAS, core " + blas_core_name();
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  if (forced) v += std::string(" (OPENBLAS_CORETYPE=") + forced + ")";
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  v += std::string("\nopenmp: ") + std::to_string(num_threads()) + " threads, OMP_WAIT_POLICY=" + (wait ? wait : "default");
  v += "\ncuda: " + cuda_describe();
  return v;
}

static void print_help() {
  std::printf("usage: lowbit COMMAND [options]   (lowbit COMMAND --help for its options)\n\n");
  for (const Command& c : commands()) std::printf("  %-8s %s\n", c.name, c.summary);
  std::printf("\n  --version  print the version and the OpenBLAS kernel in use\n");
}

int run_command(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("%s\n", version_string().c_str());
    return 0;
  }
  for (const Command& c : commands())
    if (!std::strcmp(argv[1], c.name)) return c.fn(argc - 1, argv + 1);
  std::string names;
  for (const Command& c : commands()) names += std::string(names.empty() ? "" : ", ") + c.name;
  LB_FAIL("unknown command '", argv[1], "' (commands: ", names, ")");
}

}  // namespace lowbit
