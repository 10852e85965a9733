// Subcommands of `lowbit`. Each lives in its own tools/cmd_<name>.cpp and is listed once in
// tools/commands.cpp. A command gets argv starting at its own name and returns the exit code.
#pragma once
#include <string>
#include <vector>

namespace lowbit {

using CommandFn = int (*)(int argc, char** argv);
struct Command {
  const char* name;
  const char* summary;
  CommandFn fn;
};

const std::vector<Command>& commands();
int run_command(int argc, char** argv);
std::string version_string();

int cmd_grad(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_bench_ops(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_audit(int argc, char** argv);
int cmd_export_data(int argc, char** argv);

}  // namespace lowbit
