#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "weft/metrics/registry.h"

namespace weft::metrics {
namespace {

void emit(std::string& out, const char* name, const char* type, const char* help, double value) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type,
                name, value);
  out += buf;
}

}  // namespace

void renderProcessMetrics(std::string& out) {
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may itself contain spaces.
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::string f;
    std::vector<std::string> v;
    while (fields >> f) v.push_back(f);
    // v[0] is field 3 (state); utime=14, stime=15, starttime=22, vsize=23, rss=24 (1-based).
    if (v.size() > 21) {
      double cpu = (std::stod(v[11]) + std::stod(v[12])) / ticks;
      emit(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
      std::ifstream uptime_file("/proc/uptime");
      double uptime = 0;
      uptime_file >> uptime;
      double boot = static_cast<double>(time(nullptr)) - uptime;
      emit(out, "process_start_time_seconds", "gauge", "Time that the process started (in seconds since the UNIX epoch)", boot + std::stod(v[19]) / ticks);
      emit(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", std::stod(v[20]));
      emit(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", std::stod(v[21]) * page);
    }
  }
  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  emit(out, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    emit(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", static_cast<double>(lim.rlim_cur));
  }
  std::ifstream threads_file("/proc/self/status");
  std::string line;
  while (std::getline(threads_file, line)) {
    if (line.rfind("Threads:", 0) == 0) {
      emit(out, "process_threads", "gauge", "Number of OS threads in the process.", std::stod(line.substr(8)));
    }
  }
}

}  // namespace weft::metrics
