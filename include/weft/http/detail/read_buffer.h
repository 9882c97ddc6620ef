// ReadBuffer: the bytes read from a connection and not yet consumed, in one block that is reused
// (compacted, grown when a message needs it) and never zero-filled: std::string::resize would
// memset 16 KiB before every read, which showed up at ~2 % of the proxy's CPU on small requests.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace weft::http::detail {

class ReadBuffer {
 public:
  [[nodiscard]] std::string_view pending() const { return {data_.get() + begin_, end_ - begin_}; }
  [[nodiscard]] std::size_t size() const { return end_ - begin_; }
  [[nodiscard]] bool empty() const { return end_ == begin_; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }

  // Room for at least `want` more bytes at the end: moves the pending bytes to the front when
  // that makes room, else grows. Returns where to read to and how much fits.
  std::pair<char*, std::size_t> prepare(std::size_t want) {
    if (cap_ - end_ < want) {
      const std::size_t n = size();
      if (begin_ > 0 && cap_ - n >= want) {
        std::memmove(data_.get(), data_.get() + begin_, n);
      } else {
        std::size_t cap = cap_ == 0 ? want : cap_;
        while (cap - n < want) cap *= 2;
        std::unique_ptr<char[]> bigger(new char[cap]);
        if (n > 0) std::memcpy(bigger.get(), data_.get() + begin_, n);
        data_ = std::move(bigger);
        cap_ = cap;
      }
      begin_ = 0;
      end_ = n;
    }
    return {data_.get() + end_, cap_ - end_};
  }
  void commit(std::size_t n) { end_ += n; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace weft::http::detail
