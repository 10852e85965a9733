// `lowbit grad OP --in NAME=FILE.npy ... [--opt KEY=VALUE ...] [--grad-out G.npy] --out DIR`:
// runs one registered op forward on tensors from .npy files, backpropagates G (ones by default)
// and writes DIR/out.npy and DIR/grad_NAME.npy, so gradients can be audited against PyTorch.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/npy.h"
#include "core/op_registry.h"
#include "tools/commands.h"
#include "tools/device_option.h"

namespace lowbit {

namespace {

std::string join_inputs(const RegisteredOp& op) {
  std::string r;
  for (const OpInput& in : op.inputs) r += (r.empty() ? "" : ", ") + in.name;
  return r;
}

std::string join_options(const RegisteredOp& op) {
  std::string r;
  for (const OpOption& o : op.options) r += (r.empty() ? "" : ", ") + o.name;
  return r.empty() ? "none" : r;
}

void print_op_list() {
  for (const RegisteredOp& op : registered_ops()) {
    std::printf("%s\n    %s\n    inputs:", op.name.c_str(), op.summary.c_str());
    for (size_t i = 0; i < op.inputs.size(); ++i)
      std::printf("%s %s%s%s", i ? "," : "", op.inputs[i].name.c_str(),
                  op.inputs[i].optional ? " (optional)" : "",
                  op.inputs[i].integer ? " [int64]" : "");
    std::printf("\n");
    for (const OpOption& o : op.options)
      std::printf("    --opt %-18s %s\n", (o.name + "=").c_str(), o.help.c_str());
  }
}

// "KEY=VALUE" -> {KEY, VALUE}; `flag` (--in, --opt) is named in the error.
std::pair<std::string, std::string> split_kv(const std::string& s, const std::string& op,
                                             const char* flag) {
  const size_t eq = s.find('=');
  LB_CHECK(eq != std::string::npos && eq > 0, "grad ", op, ": ", flag, " '", s,
           "' is not of the form NAME=VALUE");
  return {s.substr(0, eq), s.substr(eq + 1)};
}

std::map<std::string, std::string> parse_options(const RegisteredOp& op,
                                                 const std::vector<std::string>& raw) {
  std::map<std::string, std::string> values;
  for (const std::string& s : raw) {
    auto [key, value] = split_kv(s, op.name, "--opt");
    bool known = false;
    for (const OpOption& o : op.options) known |= o.name == key;
    LB_CHECK(known, "grad ", op.name, ": unknown option '", key, "' (options: ", join_options(op),
             ")");
    LB_CHECK(!values.count(key), "grad ", op.name, ": option '", key, "' given twice");
    values[key] = value;
  }
  return values;
}

// Reads every --in file and checks names and dtypes: floating inputs share one dtype (the
// computation's); integer inputs (class targets) are widened to int64.
std::map<std::string, Tensor> load_inputs(const RegisteredOp& op,
                                          const std::vector<std::string>& raw) {
  std::map<std::string, Tensor> in;
  for (const std::string& s : raw) {
    auto [name, file] = split_kv(s, op.name, "--in");
    const OpInput* spec = nullptr;
    for (const OpInput& i : op.inputs)
      if (i.name == name) spec = &i;
    LB_CHECK(spec, "grad ", op.name, ": unknown input '", name, "' (inputs: ", join_inputs(op),
             ")");
    LB_CHECK(!in.count(name), "grad ", op.name, ": input '", name, "' given twice");
    Tensor t;
    try {
      t = read_npy(file);
    } catch (const Error& e) {  // say which input the file was meant to be
      LB_FAIL("grad ", op.name, ": input '", name, "': ", e.what());
    }
    if (spec->integer) {
      LB_CHECK(!is_floating(t.dtype()), "grad ", op.name, ": input '", name, "' ('", file,
               "') must hold integers, got ", dtype_name(t.dtype()));
      if (t.dtype() != DType::i64) t = t.to(DType::i64);
    } else {
      LB_CHECK(is_floating(t.dtype()), "grad ", op.name, ": input '", name, "' ('", file,
               "') must be float32 or float64, got ", dtype_name(t.dtype()));
    }
    in[name] = t.set_name(name);
  }
  for (const OpInput& i : op.inputs)
    LB_CHECK(i.optional || in.count(i.name), "grad ", op.name, ": missing input '", i.name,
             "' (give --in ", i.name, "=FILE.npy; inputs: ", join_inputs(op), ")");
  std::string first;
  for (auto& [name, t] : in) {
    if (!is_floating(t.dtype())) continue;
    if (first.empty()) first = name;
    LB_CHECK(t.dtype() == in[first].dtype(), "grad ", op.name,
             ": floating inputs must share a dtype: '", first, "' is ",
             dtype_name(in[first].dtype()), ", '", name, "' is ", dtype_name(t.dtype()));
    t.set_requires_grad(true);
  }
  return in;
}

std::string join_path(const std::string& dir, const std::string& file) {
  return (std::filesystem::path(dir) / file).string();
}

}  // namespace

int cmd_grad(int argc, char** argv) {
  CLI::App app{"Run one op forward and backward on .npy tensors and write the output and the "
               "gradient of every floating-point input.",
               "lowbit grad"};
  std::string op_name, grad_out, out_dir, dot_file;
  std::vector<std::string> opts, ins;
  bool list = false, quiet = false;
  std::string device = "cpu";
  app.add_option("op", op_name, "op to run (lowbit grad --list)");
  app.add_option("--in", ins, "NAME=FILE.npy, one per input")->allow_extra_args(false);
  app.add_option("--opt", opts, "KEY=VALUE, one per option")->allow_extra_args(false);
  app.add_option("--grad-out", grad_out, "gradient of the output (.npy, same shape and dtype; "
                 "a 0-d array for a loss); default: ones");
  app.add_option("--out", out_dir, "directory for out.npy and grad_NAME.npy (created)");
  app.add_option("--dot", dot_file, "also write the graph as Graphviz DOT to this file");
  app.add_flag("--list", list, "list the ops with their inputs and options");
  app.add_option("--device", device, "cpu | cuda: where the op runs (files are read and written "
                 "on the host)")->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "do not print the files written");
  app.footer("example: lowbit grad conv2d --opt stride=2 --opt padding=1 --in x=x.npy "
             "--in weight=w.npy --grad-out g.npy --out grads/\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    LB_FAIL("grad: ", e.what(), " (lowbit grad --help)");
  }
  if (list) {
    print_op_list();
    return 0;
  }
  LB_CHECK(!op_name.empty(), "grad: no OP given (lowbit grad --list shows the ops)");
  const RegisteredOp& op = find_registered_op(op_name);
  LB_CHECK(!out_dir.empty(), "grad ", op.name, ": --out DIR is required");
  OpOptions options(op.name, parse_options(op, opts));
  std::map<std::string, Tensor> in = load_inputs(op, ins);
  const Device dev = select_device(device, false);
  if (dev != Device::cpu)
    for (auto& [name, t] : in) {  // device copies are the leaves whose gradients are written
      Tensor d = t.to_device(dev);
      if (is_floating(t.dtype())) d.set_requires_grad(true);
      t = d.set_name(name);
    }

  Tensor out = op.run(in, options);
  options.check_all_used();
  LB_CHECK(out.defined() && is_floating(out.dtype()) && out.requires_grad(), "grad ", op.name,
           ": the output does not depend on any floating-point input");
  Tensor g;
  if (!grad_out.empty()) {
    g = read_npy(grad_out);
    LB_CHECK(g.shape() == out.shape(), "grad ", op.name, ": --grad-out '", grad_out, "' has shape ",
             shape_str(g.shape()), ", the output has shape ", shape_str(out.shape()));
    LB_CHECK(g.dtype() == out.dtype(), "grad ", op.name, ": --grad-out '", grad_out, "' is ",
             dtype_name(g.dtype()), ", the output is ", dtype_name(out.dtype()));
  } else {
    g = Tensor::ones(out.shape(), out.dtype());
  }
  if (dev != Device::cpu) g = g.to_device(dev);
  if (!dot_file.empty()) {
    std::ofstream dot(dot_file);
    LB_CHECK(dot.good(), "grad ", op.name, ": cannot write --dot '", dot_file, "'");
    write_dot(out, dot);
    LB_CHECK(dot.good(), "grad ", op.name, ": error writing --dot '", dot_file, "'");
  }
  backward(out, g);

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  LB_CHECK(!ec && std::filesystem::is_directory(out_dir), "grad ", op.name,
           ": cannot create --out '", out_dir, "': ", ec ? ec.message() : "not a directory");
  const std::string out_path = join_path(out_dir, "out.npy");
  write_npy(out_path, out.detach().to_device(Device::cpu));
  if (!quiet)
    std::printf("%-14s %-16s %s\n", "out", shape_str(out.shape()).c_str(), out_path.c_str());
  for (auto& [name, t] : in) {
    if (!is_floating(t.dtype())) continue;
    // An input no gradient reached (kl_div's target) gets zeros, so every file is always there.
    Tensor gi = t.grad().defined() ? t.grad() : Tensor::zeros(t.shape(), t.dtype());
    const std::string path = join_path(out_dir, "grad_" + name + ".npy");
    if (gi.device() != Device::cpu) gi = gi.to_device(Device::cpu);
    write_npy(path, gi);
    if (!quiet)
      std::printf("%-14s %-16s %s\n", ("grad_" + name).c_str(), shape_str(gi.shape()).c_str(),
                  path.c_str());
  }
  return 0;
}

}  // namespace lowbit
