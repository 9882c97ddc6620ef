#include "control/identity/authenticator.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

namespace weft::control::identity {
namespace {

constexpr std::string_view kDigestPrefix = "sha256:";
constexpr std::string_view kWhitespace = " \t\r\n";
// File timestamps are taken from a coarse clock (a jiffy or so); a file whose mtime is this close
// to the time it was read may change again without its mtime moving.
constexpr int64_t kRacyWindowNs = 2'000'000'000;

int64_t realtimeNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string_view trim(std::string_view s) {
  auto first = s.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(kWhitespace);
  return s.substr(first, last - first + 1);
}

Error unauthenticated(std::string why) {
  return Error::downstream("unauthenticated", std::move(why));
}

std::string errnoText(int err) { return std::strerror(err); }

// Reads a whole file through one descriptor, so the key describes exactly the bytes read.
struct FileRead {
  std::string text;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
};
Result<FileRead> readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Error{"unreadable", ErrorSource::kInternal, path + ": " + errnoText(err), err};
  }
  FileRead out;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Error{"unreadable", ErrorSource::kInternal, path + ": " + errnoText(err), err};
  }
  out.ino = st.st_ino;
  out.size = st.st_size;
  out.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Error{"unreadable", ErrorSource::kInternal, path + ": " + errnoText(err), err};
    }
    if (n == 0) break;
    out.text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "sha256:<64 hex>" -> digest.
bool parseDigest(std::string_view text, TokenDigest& out) {
  if (text.substr(0, kDigestPrefix.size()) != kDigestPrefix) return false;
  text.remove_prefix(kDigestPrefix.size());
  if (text.size() != out.size() * 2) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = hexValue(text[2 * i]);
    int lo = hexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

// One line of the tokens file split into its two fields; false for blank and comment lines or
// when the line does not have exactly two fields.
bool splitLine(std::string_view line, std::string_view& identity, std::string_view& digest) {
  line = trim(line);
  if (line.empty() || line.front() == '#') return false;
  auto space = line.find_first_of(" \t");
  if (space == std::string_view::npos) return false;
  identity = line.substr(0, space);
  digest = trim(line.substr(space));
  return !identity.empty() && digest.find_first_of(" \t") == std::string_view::npos;
}

std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<LocalTokenAuthenticator>> LocalTokenAuthenticator::open(std::string path) {
  std::unique_ptr<LocalTokenAuthenticator> auth(new LocalTokenAuthenticator(std::move(path)));
  {
    MutexLock lock(auth->mu_);
    if (auto st = auth->refreshLocked(); !st) {
      return Error::internal("tokens_file", "cannot read the tokens file " + st.error().context);
    }
  }
  return auth;
}

Status LocalTokenAuthenticator::refreshLocked() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    int err = errno;
    if (loaded_) spdlog::warn("tokens file {}: {}; refusing every token", path_, errnoText(err));
    loaded_ = false;
    key_ = {};
    content_.clear();
    digests_.clear();
    return Error::internal("unreadable", path_ + ": " + errnoText(err));
  }
  FileKey now{st.st_ino, st.st_size,
              static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
  if (loaded_ && now == key_ && !racy_) return okStatus();

  auto read = readFile(path_);
  if (!read) {
    if (loaded_) spdlog::warn("tokens file {}; refusing every token", read.error().context);
    loaded_ = false;
    key_ = {};
    content_.clear();
    digests_.clear();
    return read.error();
  }
  key_ = {read->ino, read->size, read->mtime_ns};
  racy_ = realtimeNs() - read->mtime_ns < kRacyWindowNs;
  if (loaded_ && read->text == content_) return okStatus();
  std::map<std::string, TokenDigest, std::less<>> digests;
  int line_no = 0;
  int skipped = 0;
  for (std::string_view line : lines(read->text)) {
    ++line_no;
    std::string_view trimmed = trim(line);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    std::string_view identity;
    std::string_view digest_text;
    TokenDigest digest{};
    if (!splitLine(line, identity, digest_text) || !parseDigest(digest_text, digest)) {
      // Never log the line: a mistaken paste could be a raw token.
      spdlog::warn("tokens file {} line {}: not `<identity> sha256:<64 hex digits>`; skipped",
                   path_, line_no);
      ++skipped;
      continue;
    }
    digests.insert_or_assign(std::string(identity), digest);
  }
  spdlog::info("tokens file {}: loaded {} identit{}{}", path_, digests.size(),
               digests.size() == 1 ? "y" : "ies",
               skipped ? fmt::format(", skipped {} malformed line(s)", skipped) : "");
  digests_ = std::move(digests);
  content_ = std::move(read->text);
  loaded_ = true;
  return okStatus();
}

Status LocalTokenAuthenticator::authenticate(std::string_view identity, std::string_view token) {
  // Hash before taking the lock and before looking the identity up, so the work done does not
  // depend on whether the identity is known.
  const TokenDigest presented = hashToken(token);
  if (trim(token).empty()) return unauthenticated("no token presented");
  MutexLock lock(mu_);
  if (auto st = refreshLocked(); !st) {
    return unauthenticated("the tokens file cannot be read");
  }
  auto it = digests_.find(identity);
  if (it == digests_.end()) {
    return unauthenticated("no token is registered for identity \"" + printableName(identity) +
                           "\"");
  }
  if (CRYPTO_memcmp(presented.data(), it->second.data(), presented.size()) != 0) {
    return unauthenticated("the token does not match identity \"" + printableName(identity) + "\"");
  }
  return okStatus();
}

std::size_t LocalTokenAuthenticator::sizeForTest() {
  MutexLock lock(mu_);
  (void)refreshLocked();
  return digests_.size();
}

std::string printableName(std::string_view name) {
  constexpr std::size_t kMax = 253;
  std::string out(name.substr(0, kMax));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') c = '?';
  }
  if (name.size() > kMax) out += "...";
  return out;
}

Result<std::string> generateToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    return Error::internal("random", "the OpenSSL random generator failed");
  }
  unsigned char b64[64];  // 4 * ceil(32 / 3) = 44, plus NUL
  int n = EVP_EncodeBlock(b64, raw, sizeof raw);
  OPENSSL_cleanse(raw, sizeof raw);
  std::string token(reinterpret_cast<const char*>(b64), static_cast<std::size_t>(n));
  OPENSSL_cleanse(b64, sizeof b64);
  for (char& c : token) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!token.empty() && token.back() == '=') token.pop_back();
  return token;
}

TokenDigest hashToken(std::string_view token) {
  token = trim(token);
  TokenDigest out{};
  unsigned int len = 0;
  // EVP_Digest with SHA-256 cannot fail short of memory exhaustion, which crashes anyway.
  EVP_Digest(token.data(), token.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string formatDigest(const TokenDigest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kDigestPrefix);
  for (uint8_t b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

Status upsertTokenDigest(const std::string& path, std::string_view identity,
                         const TokenDigest& digest) {
  auto sys = [](std::string what, int err) {
    return Error{"io", ErrorSource::kInternal, what + ": " + errnoText(err), err};
  };
  if (identity.empty() || identity.find_first_of(" \t\r\n#") != std::string_view::npos) {
    return Error::downstream("bad_identity", "an identity has no spaces and no '#'");
  }

  const std::string lock_path = path + ".lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return sys(lock_path, errno);
  struct LockGuard {
    int fd;
    ~LockGuard() { ::close(fd); }  // closing releases the flock
  } guard{lock_fd};
  while (::flock(lock_fd, LOCK_EX) != 0) {
    if (errno != EINTR) return sys("flock " + lock_path, errno);
  }

  std::string old_text;
  if (auto read = readFile(path); read) {
    old_text = std::move(read->text);
  } else if (read.error().sys_errno != ENOENT) {
    return read.error();
  }

  std::string out;
  bool replaced = false;
  const std::string new_line = std::string(identity) + " " + formatDigest(digest);
  auto all = lines(old_text);
  // A trailing newline yields one empty last element; drop it so the file does not grow.
  if (!all.empty() && all.back().empty()) all.pop_back();
  for (std::string_view line : all) {
    std::string_view id;
    std::string_view digest_text;
    if (splitLine(line, id, digest_text) && id == identity) {
      if (!replaced) {
        out += new_line;
        out += '\n';
      }
      replaced = true;  // later duplicates of the same identity are dropped
      continue;
    }
    out.append(line);
    out += '\n';
  }
  if (!replaced) {
    out += new_line;
    out += '\n';
  }

  std::string tmp_path = path + ".tmpXXXXXX";
  std::vector<char> tmpl(tmp_path.begin(), tmp_path.end());
  tmpl.push_back('\0');
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);  // created 0600
  if (fd < 0) return sys("create a temporary file next to " + path, errno);
  tmp_path.assign(tmpl.data());
  auto fail = [&](std::string what, int err) {
    ::close(fd);
    ::unlink(tmp_path.c_str());
    return sys(std::move(what), err);
  };
  if (::fchmod(fd, 0600) != 0) return fail("chmod " + tmp_path, errno);
  std::size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::write(fd, out.data() + off, out.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write " + tmp_path, errno);
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync " + tmp_path, errno);
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return sys("close " + tmp_path, err);
  }
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return sys("rename " + tmp_path + " to " + path, err);
  }
  return okStatus();
}

}  // namespace weft::control::identity
