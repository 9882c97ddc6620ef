// Replays a fuzz target's seed corpus as an ordinary test: every file under the directories (or
// files) given on the command line goes through LLVMFuzzerTestOneInput once. A crash, sanitizer
// report or abort fails the test; an empty corpus fails too, so a mistyped path cannot pass.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::size_t count = 0;
  auto run = [&](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    ++count;
  };
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path root(argv[i]);
    if (std::filesystem::is_directory(root)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
        if (e.is_regular_file()) run(e.path());
      }
    } else {
      run(root);
    }
  }
  std::printf("replayed %zu corpus inputs\n", count);
  return count == 0 ? 1 : 0;
}
