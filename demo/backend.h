// What the two gRPC backends of the demo share: the catalog, fault injection (FAIL_RATE,
// LATENCY_MS), per-minute statistics and the serve-until-SIGTERM loop. Header-only: each backend is
// one file.
#pragma once

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

namespace weft::demo {

struct BookRow {
  int64_t id;
  const char* title;
  int64_t author_id;
  int32_t year;
};
struct AuthorRow {
  int64_t id;
  const char* name;
  const char* country;
};

// Ids 1..12 and 1..5 exist; anything else is NOT_FOUND (the traffic generator asks for a few).
inline constexpr BookRow kBooks[] = {
    {1, "Pride and Prejudice", 1, 1813}, {2, "Emma", 1, 1815},
    {3, "Persuasion", 1, 1817},          {4, "Middlemarch", 2, 1871},
    {5, "Silas Marner", 2, 1861},        {6, "The Mill on the Floss", 2, 1860},
    {7, "Moby-Dick", 3, 1851},           {8, "Bartleby, the Scrivener", 3, 1853},
    {9, "War and Peace", 4, 1869},       {10, "Anna Karenina", 4, 1878},
    {11, "Don Quixote", 5, 1605},        {12, "Exemplary Novels", 5, 1613},
};
inline constexpr AuthorRow kAuthors[] = {
    {1, "Jane Austen", "England"},       {2, "George Eliot", "England"},
    {3, "Herman Melville", "USA"},       {4, "Leo Tolstoy", "Russia"},
    {5, "Miguel de Cervantes", "Spain"},
};

struct BackendOptions {
  std::string name;  // for the log
  std::string listen = "0.0.0.0";
  int port = 0;
  double fail_rate = 0;
  double latency_ms = 0;
  int log_interval_s = 60;
};

// Adds the flags every backend takes; each also reads an environment variable, so a manifest
// sets them with `env:`.
inline void addBackendFlags(CLI::App& app, BackendOptions& o) {
  app.add_option("--listen", o.listen, "address to listen on")
      ->envname("LISTEN")
      ->capture_default_str();
  app.add_option("--port", o.port, "port to listen on")->envname("PORT")->capture_default_str();
  app.add_option("--fail-rate", o.fail_rate,
                 "fraction of calls (0..1) that fail with UNAVAILABLE or INTERNAL, at random")
      ->envname("FAIL_RATE")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--latency-ms", o.latency_ms,
                 "mean added latency per call in milliseconds, uniformly jittered by +-50%")
      ->envname("LATENCY_MS")
      ->check(CLI::Range(0.0, 60000.0))
      ->capture_default_str();
  app.add_option("--log-interval", o.log_interval_s, "seconds between statistics lines")
      ->envname("LOG_INTERVAL")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
}

// Decides each call's fate. Thread-safe: gRPC's sync server calls handlers from its pool.
class FaultInjector {
 public:
  explicit FaultInjector(const BackendOptions& o) : o_(o), rng_(std::random_device{}()) {}

  // Sleeps the jittered latency, then returns a failure status or OK.
  grpc::Status maybeFail() {
    calls_.fetch_add(1, std::memory_order_relaxed);
    double u_latency = 0;
    double u_fail = 0;
    bool unavailable = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      u_latency = unit(rng_);
      u_fail = unit(rng_);
      unavailable = unit(rng_) < 0.5;
    }
    if (o_.latency_ms > 0) {
      auto ms = o_.latency_ms * (0.5 + u_latency);
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
    }
    if (u_fail < o_.fail_rate) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      return unavailable ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected failure")
                         : grpc::Status(grpc::StatusCode::INTERNAL, "injected failure");
    }
    return grpc::Status::OK;
  }
  void notFound() { not_found_.fetch_add(1, std::memory_order_relaxed); }

  // One log line with the counts since the last one.
  void logInterval() {
    auto calls = calls_.exchange(0);
    auto failed = failed_.exchange(0);
    auto not_found = not_found_.exchange(0);
    std::printf("%s: last %ds: %llu calls, %llu injected failures, %llu not found\n",
                o_.name.c_str(), o_.log_interval_s, static_cast<unsigned long long>(calls),
                static_cast<unsigned long long>(failed),
                static_cast<unsigned long long>(not_found));
    std::fflush(stdout);
  }

 private:
  const BackendOptions& o_;
  std::mutex mu_;
  std::mt19937_64 rng_;
  std::atomic<uint64_t> calls_{0}, failed_{0}, not_found_{0};
};

// Serves `service` until SIGTERM or SIGINT, logging statistics every interval. Returns the exit
// status. Must be called from main() before any other thread exists: it blocks the signals so
// gRPC's threads inherit the mask and only this thread takes them (sigtimedwait).
inline int serveUntilSignalled(const BackendOptions& o, grpc::Service& service,
                               FaultInjector& faults) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string address = o.listen + ":" + std::to_string(o.port);
  if (o.listen.find(':') != std::string::npos)
    address = "[" + o.listen + "]:" + std::to_string(o.port);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::fprintf(stderr, "%s: cannot listen on %s\n", o.name.c_str(), address.c_str());
    return 1;
  }
  std::printf("%s: serving gRPC on %s:%d (fail rate %.3f, latency %.1f ms)\n", o.name.c_str(),
              o.listen.c_str(), bound_port, o.fail_rate, o.latency_ms);
  std::fflush(stdout);

  for (;;) {
    timespec timeout{o.log_interval_s, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      std::printf("%s: %s, shutting down\n", o.name.c_str(), sig == SIGTERM ? "SIGTERM" : "SIGINT");
      std::fflush(stdout);
      break;
    }
    if (sig < 0 && errno == EAGAIN) faults.logInterval();
  }
  // In-flight calls get a second to finish, then are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Wait();
  return 0;
}

}  // namespace weft::demo
