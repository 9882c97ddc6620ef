// Result<T>: the value-or-error type of every fallible function on the data path.
//
// Errors on the data path are values, never exceptions (docs/dev/errors.md). std::expected
// needs -std=c++23, which our clang-14 tooling lacks, so this is a deliberately small stand-in
// with the same shape: construct from a T or an Error, test with ok(), read with value()/error().
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace weft {

// Who caused a failure: the side that sent us bad bytes, the side we talk to, or ourselves.
enum class ErrorSource { kDownstream, kUpstream, kInternal };

struct Error {
  // A stable, snake_case name; it becomes the `error` label of *_errors_total metrics.
  std::string kind;
  ErrorSource source = ErrorSource::kInternal;
  // Free text for logs and for the message shown to an operator.
  std::string context;
  // errno when the failure came from a system call, else 0.
  int sys_errno = 0;

  static Error downstream(std::string kind, std::string context = {}) {
    return Error{std::move(kind), ErrorSource::kDownstream, std::move(context), 0};
  }
  static Error upstream(std::string kind, std::string context = {}, int err = 0) {
    return Error{std::move(kind), ErrorSource::kUpstream, std::move(context), err};
  }
  static Error internal(std::string kind, std::string context = {}) {
    return Error{std::move(kind), ErrorSource::kInternal, std::move(context), 0};
  }
  // Human-readable "kind: context".
  [[nodiscard]] std::string message() const { return context.empty() ? kind : kind + ": " + context; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  [[nodiscard]] const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success carries nothing.
struct Ok {};
using Status = Result<Ok>;
inline Status okStatus() { return Ok{}; }

}  // namespace weft
