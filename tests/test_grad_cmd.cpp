// `lowbit grad` run in-process on .npy files written here: output and gradients of ops that need
// no other branch (mul with broadcasting, relu, sum, dropout), the op table, OpOptions parsing,
// and the errors for unknown ops, inputs and options.
#include <doctest/doctest.h>

#include <fstream>

#include "core/npy.h"
#include "core/op_registry.h"
#include "tests/temp_dir.h"
#include "tools/commands.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

// Runs `lowbit grad ARGS... --quiet` in-process and returns its exit code.
int run_grad(std::vector<std::string> args) {
  args.insert(args.begin(), "grad");
  args.push_back("--quiet");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return cmd_grad((int)args.size(), argv.data());
}

std::vector<double> read_values(const std::string& path) {
  return read_npy(path).to_vector<double>();
}

}  // namespace

TEST_CASE("grad: mul with broadcasting writes the output and both gradients") {
  TempDir dir;
  write_npy(dir.file("a.npy"), Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  write_npy(dir.file("b.npy"), Tensor::from_vector<double>({3}, {10, 20, 30}));
  write_npy(dir.file("g.npy"), Tensor::from_vector<double>({2, 3}, {1, 1, 1, 2, 2, 2}));
  const std::string out = dir.file("res/deeper");  // created, parents included
  REQUIRE(run_grad({"mul", "--in", "a=" + dir.file("a.npy"), "--in", "b=" + dir.file("b.npy"),
                    "--grad-out", dir.file("g.npy"), "--out", out, "--dot", dir.file("g.dot")}) ==
          0);
  Tensor o = read_npy(out + "/out.npy");
  CHECK(o.dtype() == DType::f64);
  CHECK(o.shape() == Shape{2, 3});
  CHECK(o.to_vector<double>() == std::vector<double>{10, 40, 90, 40, 100, 180});
  CHECK(read_values(out + "/grad_a.npy") == std::vector<double>{10, 20, 30, 20, 40, 60});  // g * b
  Tensor gb = read_npy(out + "/grad_b.npy");
  CHECK(gb.shape() == Shape{3});
  CHECK(gb.to_vector<double>() == std::vector<double>{9, 12, 15});  // sum over rows of g * a
  std::ifstream dot(dir.file("g.dot"));
  std::string text((std::istreambuf_iterator<char>(dot)), {});
  CHECK(text.find("digraph") != std::string::npos);
  CHECK(text.find("mul") != std::string::npos);
}

TEST_CASE("grad: relu with the default gradient of ones, in float32") {
  TempDir dir;
  write_npy(dir.file("x.npy"), Tensor::from_vector<float>({4}, {-1.5f, 0.5f, -0.25f, 3}));
  REQUIRE(run_grad({"relu", "--in", "x=" + dir.file("x.npy"), "--out", dir.path()}) == 0);
  Tensor o = read_npy(dir.file("out.npy"));
  CHECK(o.dtype() == DType::f32);
  CHECK(o.to_vector<float>() == std::vector<float>{0, 0.5f, 0, 3});
  CHECK(read_npy(dir.file("grad_x.npy")).to_vector<float>() == std::vector<float>{0, 1, 0, 1});
}

TEST_CASE("grad: sum over axes with keepdim, and a full sum with a 0-d loss gradient") {
  TempDir dir;
  write_npy(dir.file("x.npy"), Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  write_npy(dir.file("g.npy"), Tensor::from_vector<double>({2, 1}, {1, -3}));
  REQUIRE(
      run_grad({"sum", "--opt", "axes=1", "--opt", "keepdim=true", "--in", "x=" + dir.file("x.npy"),
                "--grad-out", dir.file("g.npy"), "--out", dir.file("k")}) == 0);
  Tensor o = read_npy(dir.file("k/out.npy"));
  CHECK(o.shape() == Shape{2, 1});
  CHECK(o.to_vector<double>() == std::vector<double>{6, 15});
  CHECK(read_values(dir.file("k/grad_x.npy")) == std::vector<double>{1, 1, 1, -3, -3, -3});

  write_npy(dir.file("s.npy"), Tensor::scalar(2.5, DType::f64));
  REQUIRE(run_grad({"sum", "--in", "x=" + dir.file("x.npy"), "--grad-out", dir.file("s.npy"),
                    "--out", dir.file("all")}) == 0);
  Tensor s = read_npy(dir.file("all/out.npy"));
  CHECK(s.shape() == Shape{});
  CHECK(s.item<double>() == 21);
  CHECK(read_values(dir.file("all/grad_x.npy")) == std::vector<double>(6, 2.5));
}

TEST_CASE("grad: dropout's gradient is its mask, reproducible from the seed") {
  TempDir dir;
  write_npy(dir.file("x.npy"), Tensor::full({64}, 2.0, DType::f64));
  auto run = [&](const std::string& sub, const std::string& seed) {
    REQUIRE(run_grad({"dropout", "--opt", "p=0.5", "--opt", "seed=" + seed, "--in",
                      "x=" + dir.file("x.npy"), "--out", dir.file(sub)}) == 0);
    return read_values(dir.file(sub + "/grad_x.npy"));
  };
  std::vector<double> m1 = run("s1", "7"), m1b = run("s1b", "7"), m2 = run("s2", "8");
  CHECK(m1 == m1b);
  CHECK(m1 != m2);
  std::vector<double> out = read_values(dir.file("s1/out.npy"));
  int kept = 0;
  for (size_t i = 0; i < m1.size(); ++i) {
    CHECK((m1[i] == 0 || m1[i] == 2));  // inverted dropout: kept elements scaled by 1/(1-p)
    CHECK(out[i] == 2.0 * m1[i]);
    kept += m1[i] != 0;
  }
  CHECK(kept > 10);
  CHECK(kept < 54);
  // p = 0 returns the input itself: the output is a leaf and its gradient passes straight through.
  REQUIRE(run_grad({"dropout", "--opt", "p=0", "--in", "x=" + dir.file("x.npy"), "--out",
                    dir.file("p0")}) == 0);
  CHECK(read_values(dir.file("p0/out.npy")) == std::vector<double>(64, 2.0));
  CHECK(read_values(dir.file("p0/grad_x.npy")) == std::vector<double>(64, 1.0));
}

TEST_CASE("grad: errors name the op and the offending input, option or file") {
  TempDir dir;
  write_npy(dir.file("a.npy"), Tensor::ones({2, 3}, DType::f64));
  write_npy(dir.file("a32.npy"), Tensor::ones({2, 3}, DType::f32));
  write_npy(dir.file("i.npy"), Tensor::ones({2, 3}, DType::i64));
  write_npy(dir.file("g.npy"), Tensor::ones({3, 2}, DType::f64));
  write_npy(dir.file("g32.npy"), Tensor::ones({2, 3}, DType::f32));
  const std::string a = "a=" + dir.file("a.npy"), b = "b=" + dir.file("a.npy"), out = dir.file("o");
  // Runs the command and checks that it fails with a message containing `expected`.
  auto check_err = [&](std::vector<std::string> args, const std::string& expected) {
    std::string msg = "(no error)";
    try {
      run_grad(args);
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK_MESSAGE(msg.find(expected) != std::string::npos, msg);
  };
  check_err({"mull", "--in", a, "--out", out}, "unknown op 'mull' (known ops: ");
  check_err({"mul", "--in", a, "--in", "c=x.npy", "--out", out},
            "grad mul: unknown input 'c' (inputs: a, b)");
  check_err({"mul", "--in", a, "--out", out}, "grad mul: missing input 'b'");
  check_err({"mul", "--in", a, "--in", a, "--out", out}, "input 'a' given twice");
  check_err({"sum", "--in", "x=" + dir.file("a.npy"), "--opt", "axis=1", "--out", out},
            "grad sum: unknown option 'axis' (options: axes, keepdim)");
  check_err({"sum", "--in", "x=" + dir.file("a.npy"), "--opt", "keepdim=maybe", "--out", out},
            "sum: option 'keepdim': expected true/false/1/0, got 'maybe'");
  check_err({"sum", "--in", "x=" + dir.file("a.npy"), "--opt", "axes=5", "--out", out},
            "axis 5 out of range");
  check_err({"mul", "--in", a, "--in", b, "--grad-out", dir.file("g.npy"), "--out", out},
            "grad mul: --grad-out '" + dir.file("g.npy") +
                "' has shape (3, 2), the output has shape (2, 3)");
  check_err({"mul", "--in", a, "--in", b, "--grad-out", dir.file("g32.npy"), "--out", out},
            "is float32, the output is float64");
  check_err({"mul", "--in", a, "--in", "b=" + dir.file("a32.npy"), "--out", out},
            "floating inputs must share a dtype");
  check_err({"mul", "--in", a, "--in", "b=" + dir.file("i.npy"), "--out", out},
            "input 'b' ('" + dir.file("i.npy") + "') must be float32 or float64, got int64");
  check_err({"softmax_cross_entropy", "--in", "x=" + dir.file("a.npy"), "--in",
             "target=" + dir.file("a.npy"), "--out", out},
            "input 'target' ('" + dir.file("a.npy") + "') must hold integers");
  check_err({"mul", "--in", a, "--in", "b=" + dir.file("nope.npy"), "--out", out},
            "grad mul: input 'b': read_npy: cannot open '" + dir.file("nope.npy") + "'");
  check_err({"mul", "--in", a, "--in", b}, "--out DIR is required");
  check_err({"mul", "--in", "a", "--out", out}, "--in 'a' is not of the form NAME=VALUE");
  check_err({"maxpool2d", "--in", "x=" + dir.file("a.npy"), "--out", out},
            "maxpool2d: option 'kernel_size' is required");
  check_err({"mul", "--bogus"}, "--bogus");
  CHECK_FALSE(std::filesystem::exists(out));  // nothing written by a failed run
}

TEST_CASE("op registry: sorted table with the core ops, inputs and options") {
  const auto& ops = registered_ops();
  for (size_t i = 1; i < ops.size(); ++i) CHECK(ops[i - 1].name < ops[i].name);
  for (const char* name : {"conv2d",
                           "linear",
                           "matmul",
                           "batchnorm2d",
                           "relu",
                           "relu6",
                           "maxpool2d",
                           "avgpool2d",
                           "global_avg_pool2d",
                           "channel_shuffle",
                           "softmax_cross_entropy",
                           "log_softmax",
                           "kl_div",
                           "add",
                           "sub",
                           "mul",
                           "div",
                           "sum",
                           "mean",
                           "dropout"}) {
    CAPTURE(name);
    CHECK(find_registered_op(name).name == name);
  }
  const RegisteredOp& conv = find_registered_op("conv2d");
  REQUIRE(conv.inputs.size() == 3);
  CHECK(conv.inputs[2].name == "bias");
  CHECK(conv.inputs[2].optional);
  CHECK(find_registered_op("softmax_cross_entropy").inputs[1].integer);
  std::vector<std::string> names;
  for (const OpOption& o : conv.options) names.push_back(o.name);
  CHECK(names == std::vector<std::string>{"stride", "padding", "dilation", "groups"});
  CHECK_THROWS_WITH_AS(find_registered_op("conv3d"),
                       doctest::Contains("unknown op 'conv3d' (known ops: "), Error);
}

TEST_CASE("op options: typed getters, pairs, and errors naming op, option and value") {
  OpOptions o("conv2d", {{"stride", "2"},
                         {"padding", "1,0"},
                         {"eps", "1e-3"},
                         {"on", "False"},
                         {"bad", "2x"},
                         {"name", "lsq"}});
  CHECK(o.get_pair("stride", 1) == std::vector<int64_t>{2, 2});
  CHECK(o.get_pair("padding", 0) == std::vector<int64_t>{1, 0});
  CHECK(o.get_pair("dilation", 1) == std::vector<int64_t>{1, 1});
  CHECK(o.get_double("eps", 0) == 1e-3);
  CHECK(o.get_bool("on", true) == false);
  CHECK(o.get_string("name", "") == "lsq");
  CHECK(o.get_int("groups", 3) == 3);
  CHECK_THROWS_WITH_AS(o.check_all_used(), doctest::Contains("conv2d: unknown option 'bad'"),
                       Error);
  CHECK_THROWS_WITH_AS(o.get_int("bad", 0),
                       doctest::Contains("conv2d: option 'bad': expected an integer, got '2x'"),
                       Error);
  CHECK_NOTHROW(o.check_all_used());  // 'bad' was read above, so it is known now
  OpOptions p("pool", {{"k", "2,1,3"}, {"x", "nan"}, {"b", "yes"}});
  CHECK_THROWS_WITH_AS(p.get_pair("k", 0),
                       doctest::Contains("pool: option 'k': expected an integer or a pair"), Error);
  CHECK_THROWS_WITH_AS(p.get_double("x", 0),
                       doctest::Contains("pool: option 'x': expected a finite number, got 'nan'"),
                       Error);
  CHECK_THROWS_WITH_AS(p.get_bool("b", false), doctest::Contains("pool: option 'b'"), Error);
  CHECK_THROWS_WITH_AS(OpOptions("lsq", {{"bits", "99999999999999999999"}}).get_int("bits", 0),
                       doctest::Contains("lsq: option 'bits'"), Error);
}
