// `weft certs`: creates the certificates of SPEC §3 (trust anchor -> issuer, and the injector
// webhook's serving certificate) and inspects certificate files.
//
// Files are written so that a crash or a full disk never leaves half a key behind and an
// existing file is never replaced without --force: each is written to a temporary file in the
// target directory (created O_EXCL with mode 0600, then fchmod'ed to its final mode), fsync'ed,
// and renamed into place; without --force the rename refuses to replace anything.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/commands/commands.h"
#include "weft/common/result.h"
#include "weft/config/values.h"
#include "weft/identity/certs.h"

namespace weft::cli {
namespace {

namespace fs = std::filesystem;
using identity::CertSummary;
using identity::PKeyPtr;
using identity::SystemTime;
using identity::X509Ptr;
using std::chrono::seconds;

constexpr const char* kDefaultAnchorName = "root.weft.cluster.local";
constexpr const char* kDefaultIssuerName = "identity.weft.cluster.local";
constexpr const char* kDefaultWebhookName = "weft-injector.weft.svc";
constexpr const char* kDefaultAnchorLifetime = "87600h";  // 10 years
constexpr const char* kDefaultIssuerLifetime = "8760h";   // 1 year
constexpr const char* kDefaultWebhookLifetime = "8760h";
// Certificates and keys are a few KiB; a trust bundle a few dozen roots.
constexpr std::size_t kMaxInputBytes = 4 * 1024 * 1024;
// The library's own bound; longer is surely a typo.
constexpr seconds kMaxLifetime = std::chrono::hours(24 * 365 * 100);

// Certificates carry whole seconds; so does every `now` here, so that "a year from now" and the
// NotAfter written for it compare equal.
SystemTime wholeSecondsNow() {
  return std::chrono::floor<seconds>(std::chrono::system_clock::now());
}

void printError(const std::string& message) { std::cerr << "weft: " << message << "\n"; }
void printWarning(const std::string& message) { std::cerr << "weft: warning: " << message << "\n"; }
[[noreturn]] void fail(const std::string& message) {
  printError(message);
  exitWith(kExitFailed);
}
[[noreturn]] void usageError(const std::string& message) {
  std::cerr << "weft: " << message << "\nRun with --help for more information.\n";
  exitWith(kExitUsage);
}

// --- durations and times ------------------------------------------------------------------------

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The WEFT_* duration syntax of weft::config::parseDuration ("8760h", "1h30m"), whose one-year
// bound is a typo guard for proxy settings. Certificate lifetimes legitimately reach ten years
// (the trust anchor's default), so beyond that bound each "<number><unit>" term is taken apart
// here, parseDuration still deciding what a unit is worth.
Result<seconds> parseLifetime(std::string_view text) {
  auto direct = config::parseDuration(text);
  std::chrono::milliseconds total{0};
  if (direct.ok()) {
    total = *direct;
  } else {
    constexpr auto kMaxMs = std::chrono::duration_cast<std::chrono::milliseconds>(kMaxLifetime);
    std::string_view s = trim(text);
    if (s.empty()) return direct.error();
    while (!s.empty()) {
      std::size_t digits = 0;
      while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
      std::size_t unit_len = 0;
      while (digits + unit_len < s.size() &&
             std::isalpha(static_cast<unsigned char>(s[digits + unit_len]))) {
        ++unit_len;
      }
      if (digits == 0 || unit_len == 0) return direct.error();
      auto unit = config::parseDuration("1" + std::string(s.substr(digits, unit_len)));
      if (!unit.ok()) return direct.error();
      uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + digits, n);
      const auto unit_ms = static_cast<uint64_t>(unit->count());
      if (ec != std::errc() || n > static_cast<uint64_t>(kMaxMs.count()) / unit_ms ||
          total.count() + static_cast<int64_t>(n * unit_ms) > kMaxMs.count()) {
        return Error::internal("invalid_value",
                               "\"" + std::string(text) + "\" is longer than 100 years");
      }
      total += std::chrono::milliseconds(n * unit_ms);
      s.remove_prefix(digits + unit_len);
    }
  }
  const auto whole = std::chrono::duration_cast<seconds>(total);
  if (whole < seconds(1)) {
    return Error::internal("invalid_value", "\"" + std::string(text) + "\" is shorter than 1s");
  }
  return whole;
}

CLI::Validator lifetimeValidator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        auto parsed = parseLifetime(input);
        return parsed.ok() ? std::string() : parsed.error().context;
      },
      "DURATION", "lifetime");
}

std::string lowercase(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

CLI::Validator dnsNameValidator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        input = lowercase(input);
        if (identity::isValidIdentityName(input)) return {};
        return "\"" + input +
               "\" is not a DNS name (letters, digits and '-' in dot-separated labels of 1 to 63 "
               "characters)";
      },
      "NAME", "dns name");
}

CLI::Validator commonNameValidator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        // X.520's ub-common-name; OpenSSL refuses longer.
        if (input.empty() || input.size() > 64) return "a common name has 1 to 64 characters";
        return {};
      },
      "NAME", "common name");
}

std::string formatTime(SystemTime t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// "364d 23h", "5h 12m", "42m", "30s"; `d` must not be negative.
std::string formatSpan(seconds d) {
  const auto total = d.count();
  const auto days = total / 86400;
  const auto hours = (total % 86400) / 3600;
  const auto minutes = (total % 3600) / 60;
  auto join = [](long long big, const char* big_unit, long long small, const char* small_unit) {
    std::string s = std::to_string(big) + big_unit;
    if (small != 0) s += " " + std::to_string(small) + small_unit;
    return s;
  };
  if (days > 0) return join(days, "d", hours, "h");
  if (hours > 0) return join(hours, "h", minutes, "m");
  if (minutes > 0) return std::to_string(minutes) + "m";
  return std::to_string(total) + "s";
}

// How a certificate stands at `now`, for people.
struct TimeStatus {
  bool expired = false;
  bool not_yet_valid = false;
  seconds left{0};   // until NotAfter; negative once expired
  std::string text;  // "364d 23h" (left), "EXPIRED 2d ago", "NOT YET VALID, starts in 3h"
};

TimeStatus timeStatus(const CertSummary& s, SystemTime now) {
  TimeStatus t;
  t.left = std::chrono::duration_cast<seconds>(s.not_after - now);
  if (now > s.not_after) {
    t.expired = true;
    t.text = "EXPIRED " + formatSpan(-t.left) + " ago";
  } else if (now < s.not_before) {
    t.not_yet_valid = true;
    t.text = "NOT YET VALID, starts in " +
             formatSpan(std::chrono::duration_cast<seconds>(s.not_before - now));
  } else {
    t.text = formatSpan(t.left);
  }
  return t;
}

// --- files --------------------------------------------------------------------------------------

std::string errnoText(int err) { return std::strerror(err); }

// The whole file, or "-" for stdin; capped at kMaxInputBytes.
Result<std::string> readFile(const std::string& path) {
  const bool stdin_path = path == "-";
  const int fd = stdin_path ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Error::internal("read_failed", "cannot read " + path + ": " + errnoText(errno));
  std::string data;
  char buf[65536];
  Status status = okStatus();
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = Error::internal("read_failed", "cannot read " + path + ": " + errnoText(errno));
      break;
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > kMaxInputBytes) {
      status = Error::internal(
          "read_failed", path + " is larger than " + std::to_string(kMaxInputBytes) + " bytes");
      break;
    }
  }
  if (!stdin_path) ::close(fd);
  if (!status.ok()) return status.error();
  return data;
}

bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// A file written in full under a temporary name next to its target, waiting for commit().
// Destroyed uncommitted, it removes the temporary file.
class StagedFile {
 public:
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  StagedFile(StagedFile&& other) noexcept
      : target_(std::move(other.target_)), temp_(std::exchange(other.temp_, {})) {}
  StagedFile& operator=(StagedFile&&) = delete;
  ~StagedFile() {
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }

  static Result<StagedFile> stage(const std::string& target, std::string_view content,
                                  mode_t mode) {
    const fs::path path(target);
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    std::string temp = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
    // mkostemp: O_CREAT|O_EXCL, mode 0600, so a key is never readable by others, not even
    // while it is being written.
    const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
    if (fd < 0) {
      return Error::internal("write_failed",
                             "cannot create a file in " + dir.string() + ": " + errnoText(errno));
    }
    StagedFile staged(target, temp);
    bool ok = ::fchmod(fd, mode) == 0 && writeAll(fd, content) && ::fsync(fd) == 0;
    const int err = errno;
    ok = ::close(fd) == 0 && ok;
    if (!ok)
      return Error::internal("write_failed", "cannot write " + target + ": " + errnoText(err));
    return staged;
  }

  // Moves the file into place; without `force`, only if nothing is there.
  Status commit(bool force) {
    int rc = 0;
    if (force) {
      rc = ::rename(temp_.c_str(), target_.c_str());
    } else {
      rc = ::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, target_.c_str(), RENAME_NOREPLACE);
      if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
        // A file system without RENAME_NOREPLACE: link() refuses to replace too.
        rc = ::link(temp_.c_str(), target_.c_str());
        if (rc == 0) ::unlink(temp_.c_str());
      }
    }
    if (rc != 0) {
      if (errno == EEXIST) {
        return Error::internal("exists", target_ + " already exists; pass --force to overwrite it");
      }
      return Error::internal("write_failed", "cannot write " + target_ + ": " + errnoText(errno));
    }
    temp_.clear();
    syncDirectory();
    return okStatus();
  }

 private:
  StagedFile(std::string target, std::string temp)
      : target_(std::move(target)), temp_(std::move(temp)) {}

  // The rename itself must survive a crash too.
  void syncDirectory() const {
    const fs::path path(target_);
    const std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }

  std::string target_;
  std::string temp_;
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Also true for two spellings of one file that does not exist yet.
bool samePath(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::equivalent(a, b, ec)) return true;
  std::error_code ec_a;
  std::error_code ec_b;
  const fs::path canonical_a = fs::weakly_canonical(a, ec_a);
  const fs::path canonical_b = fs::weakly_canonical(b, ec_b);
  return !ec_a && !ec_b && canonical_a == canonical_b;
}

// --- shared flags -------------------------------------------------------------------------------

struct CreateOptions {
  std::string cert;
  std::string key;
  std::string common_name;
  std::string lifetime;
  std::string ca_cert;
  std::string ca_key;
  std::vector<std::string> dns_names;
  bool force = false;
  std::string output = "table";
};

void addTargetOptions(CLI::App* cmd, CreateOptions& o, const std::string& what) {
  cmd->add_option("--cert", o.cert, "where to write the " + what + " certificate (PEM, mode 0644)")
      ->required()
      ->type_name("FILE");
  cmd->add_option("--key", o.key,
                  "where to write its private key (PKCS#8 PEM, unencrypted, mode 0600)")
      ->required()
      ->type_name("FILE");
  cmd->add_flag("--force", o.force, "replace --cert and --key if they exist (default: refuse)");
  addOutputOption(cmd, o.output);
}

void addLifetimeOption(CLI::App* cmd, CreateOptions& o, const char* default_value,
                       const std::string& note) {
  o.lifetime = default_value;
  cmd->add_option("--lifetime", o.lifetime,
                  "how long the certificate is valid, as a duration with a unit: 8760h, 720h, "
                  "90m" +
                      note)
      ->capture_default_str()
      ->check(lifetimeValidator());
}

void addCaOptions(CLI::App* cmd, CreateOptions& o, const std::string& what) {
  cmd->add_option("--ca-cert", o.ca_cert, "the CA certificate (PEM) that signs " + what)
      ->required()
      ->type_name("FILE");
  cmd->add_option("--ca-key", o.ca_key, "the private key of --ca-cert (PEM, unencrypted)")
      ->required()
      ->type_name("FILE");
}

// Checked before any key is generated, so a refusal changes nothing.
void checkTargets(const CreateOptions& o) {
  if (samePath(o.cert, o.key)) usageError("--cert and --key name the same file: " + o.cert);
  for (const auto* input : {&o.ca_cert, &o.ca_key}) {
    if (input->empty()) continue;
    for (const auto* output : {&o.cert, &o.key}) {
      if (samePath(*input, *output)) {
        usageError(*output + " is also an input (" + *input + "); write to another file");
      }
    }
  }
  if (o.force) return;
  for (const auto* path : {&o.cert, &o.key}) {
    if (exists(*path)) fail(*path + " already exists; pass --force to overwrite it");
  }
}

// Writes the key (0600) and then the certificate (0644). Both are staged before either is moved
// into place, so a failure while writing leaves the old pair (or nothing) behind.
void writePair(const CreateOptions& o, EVP_PKEY* key, X509* cert) {
  const std::string key_pem = identity::privateKeyToPem(key);
  const std::string cert_pem = identity::certToPem(cert);
  if (key_pem.empty() || cert_pem.empty()) fail("cannot encode the new key and certificate");
  auto staged_key = StagedFile::stage(o.key, key_pem, 0600);
  if (!staged_key.ok()) fail(staged_key.error().context);
  auto staged_cert = StagedFile::stage(o.cert, cert_pem, 0644);
  if (!staged_cert.ok()) fail(staged_cert.error().context);
  if (auto ok = staged_key->commit(o.force); !ok.ok()) fail(ok.error().context);
  if (auto ok = staged_cert->commit(o.force); !ok.ok()) {
    fail(ok.error().context + " (the new key was written to " + o.key + ")");
  }
}

// Certificates made here start 5 minutes in the past: a node whose clock is behind (up to the
// 5 minutes `weft check` tolerates) must not see the anchor or issuer as "not yet valid".
constexpr seconds kCaBackdate{5 * 60};

seconds lifetimeOf(const CreateOptions& o) {
  auto lifetime = parseLifetime(o.lifetime);  // validated by CLI11 already
  if (!lifetime.ok()) usageError("--lifetime: " + lifetime.error().context);
  return *lifetime;
}

PKeyPtr newKey() {
  auto key = identity::generateP256Key();
  if (!key.ok()) fail(key.error().message());
  return std::move(key).value();
}

struct Ca {
  X509Ptr cert;
  PKeyPtr key;
};

Ca loadCa(const CreateOptions& o) {
  auto cert_pem = readFile(o.ca_cert);
  if (!cert_pem.ok()) fail("--ca-cert: " + cert_pem.error().context);
  auto certs = identity::certsFromPem(*cert_pem);
  Ca ca;
  if (certs.ok()) {
    ca.cert = std::move(certs->front());
  } else if (auto der = identity::certFromDer(*cert_pem); der.ok()) {
    ca.cert = std::move(der).value();
  } else {
    fail("--ca-cert: no certificate in " + o.ca_cert + ": " + certs.error().context);
  }
  auto key_pem = readFile(o.ca_key);
  if (!key_pem.ok()) fail("--ca-key: " + key_pem.error().context);
  auto key = identity::privateKeyFromPem(*key_pem);
  if (!key.ok()) fail("--ca-key: " + o.ca_key + ": " + key.error().context);
  ca.key = std::move(key).value();
  return ca;
}

// Turns the library's refusal to sign into advice about the flags.
[[noreturn]] void failSigning(const Error& e, const CreateOptions& o) {
  if (e.kind == "key_mismatch") {
    fail("--ca-key " + o.ca_key + " is not the private key of --ca-cert " + o.ca_cert);
  }
  if (e.kind == "issuer_expired") {
    fail("--ca-cert " + o.ca_cert + ": " + e.context +
         " (create a new trust anchor with `weft certs create-trust-anchor`)");
  }
  if (e.kind == "issuer_not_ca") fail("--ca-cert " + o.ca_cert + ": " + e.context);
  if (e.kind == "invalid_argument") usageError(e.context);
  fail(e.message());
}

nlohmann::json certJson(const CertSummary& s, SystemTime now) {
  const TimeStatus t = timeStatus(s, now);
  return {
      {"subject", s.subject},
      {"issuer", s.issuer},
      {"self_signed", s.subject == s.issuer},
      {"dns_names", s.dns_names},
      {"not_before", formatTime(s.not_before)},
      {"not_after", formatTime(s.not_after)},
      {"seconds_left", t.left.count()},
      {"time_left", t.text},
      {"expired", t.expired},
      {"not_yet_valid", t.not_yet_valid},
      {"key_algorithm", s.key_algorithm},
      {"signature_algorithm", s.signature_algorithm},
      {"is_ca", s.is_ca},
      {"serial", s.serial_hex},
      {"sha256_fingerprint", s.sha256_fingerprint},
  };
}

std::string dump(const nlohmann::json& j) {
  // File names need not be UTF-8; everything else is ASCII already.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

void printCertTable(const CertSummary& s, SystemTime now, const std::string& indent) {
  const TimeStatus t = timeStatus(s, now);
  auto row = [&](const char* label, const std::string& value) {
    std::printf("%s%-12s %s\n", indent.c_str(), label, value.c_str());
  };
  std::string sans;
  for (const auto& name : s.dns_names) sans += (sans.empty() ? "" : ", ") + name;
  row("subject", s.subject.empty() ? "(empty)" : s.subject);
  row("SANs", sans.empty() ? "(none)" : sans);
  row("issuer", s.issuer + (s.subject == s.issuer ? " (self-signed)" : ""));
  row("not before", formatTime(s.not_before));
  row("not after",
      formatTime(s.not_after) + " (" + t.text + (t.expired || t.not_yet_valid ? ")" : " left)"));
  row("key", s.key_algorithm);
  row("signature", s.signature_algorithm);
  row("CA", s.is_ca ? "yes" : "no");
  row("serial", s.serial_hex);
  row("SHA-256", s.sha256_fingerprint);
}

// What the create commands print on stdout.
void reportCreated(const CreateOptions& o, const std::string& what, X509* cert, SystemTime now) {
  const CertSummary s = identity::describe(cert);
  if (o.output == "json") {
    std::printf("%s\n", dump({{"created", what},
                              {"cert_file", o.cert},
                              {"key_file", o.key},
                              {"certificate", certJson(s, now)}})
                            .c_str());
    return;
  }
  std::printf("Created the %s certificate %s and its private key %s (mode 0600).\n", what.c_str(),
              o.cert.c_str(), o.key.c_str());
  printCertTable(s, now, "  ");
}

// --- create-trust-anchor ------------------------------------------------------------------------

void runCreateTrustAnchor(const CreateOptions& o) {
  checkTargets(o);
  const SystemTime now = wholeSecondsNow();
  PKeyPtr key = newKey();
  auto cert = identity::createRootCa(key.get(), {o.common_name, lifetimeOf(o), kCaBackdate}, now);
  if (!cert.ok()) {
    if (cert.error().kind == "invalid_argument") usageError(cert.error().context);
    fail(cert.error().message());
  }
  writePair(o, key.get(), cert->get());
  reportCreated(o, "trust anchor", cert->get(), now);
  if (o.output == "table") {
    std::printf(
        "\nThe certificate is the trust bundle: every proxy checks its peers against it. Keep the "
        "key\noffline; it is needed only to create issuers (weft certs create-issuer).\n");
  }
}

// --- create-issuer ------------------------------------------------------------------------------

void runCreateIssuer(const CreateOptions& o) {
  checkTargets(o);
  const SystemTime now = wholeSecondsNow();
  const seconds lifetime = lifetimeOf(o);
  Ca ca = loadCa(o);
  PKeyPtr key = newKey();
  auto cert = identity::createIntermediateCa(key.get(), {o.common_name, lifetime, kCaBackdate},
                                             ca.cert.get(), ca.key.get(), now);
  if (!cert.ok()) failSigning(cert.error(), o);
  writePair(o, key.get(), cert->get());
  reportCreated(o, "issuer", cert->get(), now);

  const CertSummary s = identity::describe(cert->get());
  if (s.not_after < now + lifetime) {
    printWarning("the issuer expires with its trust anchor, on " + formatTime(s.not_after) +
                 ", before the --lifetime asked for; create a longer-lived trust anchor first if "
                 "that is too soon");
  }
  std::vector<X509*> roots{ca.cert.get()};
  if (auto ok = identity::verifyChain(cert->get(), {}, roots, now); !ok.ok()) {
    printWarning("the new issuer does not verify against " + o.ca_cert + " alone (" +
                 ok.error().message() +
                 "); proxies will need the rest of the chain in their trust bundle");
  }
  printWarning(
      "the issuer certificate expires on " + formatTime(s.not_after) + " (in " +
      formatSpan(std::chrono::duration_cast<seconds>(s.not_after - now)) +
      "). Rotate it before then:\n"
      "  - automatically, with cert-manager: a Certificate signed by the trust anchor that keeps\n"
      "    the issuer Secret renewed; or\n"
      "  - by hand: run `weft certs create-issuer --force` again with the same --ca-cert and\n"
      "    --ca-key, and replace the issuer Secret (or files) with the new certificate and key.\n"
      "The identity service reloads a changed issuer without a restart, and proxies move to it\n"
      "at their next certificate refresh. Once the issuer has expired no proxy gets a new\n"
      "certificate, and mTLS between proxies fails within a day.");
}

// --- create-webhook -----------------------------------------------------------------------------

void runCreateWebhook(const CreateOptions& o) {
  checkTargets(o);
  const SystemTime now = wholeSecondsNow();
  const seconds lifetime = lifetimeOf(o);
  Ca ca = loadCa(o);
  PKeyPtr key = newKey();
  auto cert = identity::createServerCert(key.get(), {"", lifetime, kCaBackdate}, o.dns_names,
                                         ca.cert.get(), ca.key.get(), now);
  if (!cert.ok()) failSigning(cert.error(), o);
  writePair(o, key.get(), cert->get());
  reportCreated(o, "webhook", cert->get(), now);
  if (o.output == "table") {
    std::printf(
        "\nThe API server must trust %s: it is the caBundle of the webhook "
        "configuration.\n",
        o.ca_cert.c_str());
  }
}

// --- inspect ------------------------------------------------------------------------------------

struct InspectOptions {
  std::vector<std::string> files;
  std::string bundle;
  std::string output = "table";
};

struct FileReport {
  std::string file;
  std::string error;  // unreadable or no certificate
  std::vector<CertSummary> certs;
  std::optional<Status> verification;  // with --bundle
};

std::vector<X509Ptr> loadCerts(const std::string& data, std::string* error) {
  auto certs = identity::certsFromPem(data);
  if (certs.ok()) return std::move(certs).value();
  if (auto der = identity::certFromDer(data); der.ok()) {
    std::vector<X509Ptr> one;
    one.push_back(std::move(der).value());
    return one;
  }
  *error = "no certificate could be read: " + certs.error().context;
  return {};
}

void runInspect(const InspectOptions& o) {
  const SystemTime now = wholeSecondsNow();
  std::vector<X509Ptr> roots;
  if (!o.bundle.empty()) {
    auto data = readFile(o.bundle);
    if (!data.ok()) fail("--bundle: " + data.error().context);
    std::string error;
    roots = loadCerts(*data, &error);
    if (roots.empty()) fail("--bundle " + o.bundle + ": " + error);
  }
  std::vector<X509*> root_ptrs;
  for (auto& root : roots) root_ptrs.push_back(root.get());

  bool ok = true;
  std::vector<FileReport> reports;
  for (const auto& file : o.files) {
    FileReport report{file, {}, {}, std::nullopt};
    auto data = readFile(file);
    std::vector<X509Ptr> certs;
    if (!data.ok()) {
      report.error = data.error().context;
    } else {
      certs = loadCerts(*data, &report.error);
    }
    for (auto& cert : certs) {
      report.certs.push_back(identity::describe(cert.get()));
      const TimeStatus t = timeStatus(report.certs.back(), now);
      if (t.expired || t.not_yet_valid) ok = false;
    }
    if (!certs.empty() && !roots.empty()) {
      std::vector<X509*> intermediates;
      for (std::size_t i = 1; i < certs.size(); ++i) intermediates.push_back(certs[i].get());
      report.verification =
          identity::verifyChain(certs.front().get(), intermediates, root_ptrs, now);
      if (!report.verification->ok()) ok = false;
    }
    if (!report.error.empty()) ok = false;
    reports.push_back(std::move(report));
  }

  if (o.output == "json") {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& r : reports) {
      nlohmann::json certs = nlohmann::json::array();
      for (const auto& s : r.certs) certs.push_back(certJson(s, now));
      nlohmann::json verification = nullptr;
      if (r.verification) {
        verification = {{"bundle", o.bundle}, {"verifies", r.verification->ok()}};
        if (!r.verification->ok()) {
          verification["reason"] = r.verification->error().kind;
          verification["detail"] = r.verification->error().context;
        }
      }
      files.push_back(
          {{"file", r.file},
           {"error", r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error)},
           {"certificates", certs},
           {"verification", verification}});
    }
    std::printf("%s\n", dump({{"ok", ok}, {"files", files}}).c_str());
  } else {
    bool first = true;
    for (const auto& r : reports) {
      if (!first) std::printf("\n");
      first = false;
      std::printf("%s\n", r.file.c_str());
      if (!r.error.empty()) std::printf("  error: %s\n", r.error.c_str());
      for (std::size_t i = 0; i < r.certs.size(); ++i) {
        std::printf("  certificate %zu of %zu%s\n", i + 1, r.certs.size(),
                    r.certs.size() > 1 && i == 0 ? " (leaf)" : "");
        printCertTable(r.certs[i], now, "    ");
      }
      if (r.verification) {
        if (r.verification->ok()) {
          std::printf("  verifies: yes (against %s)\n", o.bundle.c_str());
        } else {
          std::printf("  verifies: no, against %s: %s\n", o.bundle.c_str(),
                      r.verification->error().message().c_str());
        }
      }
    }
  }
  if (!ok) exitWith(kExitFailed);
}

}  // namespace

void addCertsCommand(CLI::App& app) {
  CLI::App* certs = app.add_subcommand(
      "certs",
      "Create and inspect Weft's certificates: the trust anchor (root CA), the identity issuer "
      "(intermediate CA) that signs every proxy's 24 h certificate, and the injector webhook's "
      "serving certificate. Keys are ECDSA P-256.");
  certs->require_subcommand(1);
  certs->footer(
      "Typical setup:\n"
      "  weft certs create-trust-anchor --cert ca.crt --key ca.key\n"
      "  weft certs create-issuer --cert issuer.crt --key issuer.key --ca-cert ca.crt --ca-key "
      "ca.key\n"
      "  weft certs inspect issuer.crt --bundle ca.crt");

  {
    auto o = std::make_shared<CreateOptions>();
    CLI::App* cmd = certs->add_subcommand(
        "create-trust-anchor",
        "Create a self-signed root CA, the trust anchor every proxy verifies peers against "
        "(basicConstraints CA:TRUE, keyUsage keyCertSign+cRLSign).");
    addTargetOptions(cmd, *o, "trust anchor");
    o->common_name = kDefaultAnchorName;
    cmd->add_option("--common-name", o->common_name, "the certificate's subject CN")
        ->capture_default_str()
        ->check(commonNameValidator());
    addLifetimeOption(cmd, *o, kDefaultAnchorLifetime, " (default: 10 years)");
    cmd->callback([o] { runCreateTrustAnchor(*o); });
  }
  {
    auto o = std::make_shared<CreateOptions>();
    CLI::App* cmd = certs->add_subcommand(
        "create-issuer",
        "Create the identity issuer: an intermediate CA (pathlen 0) signed by the trust anchor. "
        "The identity service signs proxy certificates with it. Its NotAfter never passes the "
        "anchor's. It must be rotated before it expires.");
    addTargetOptions(cmd, *o, "issuer");
    addCaOptions(cmd, *o, "the issuer: the trust anchor");
    o->common_name = kDefaultIssuerName;
    cmd->add_option("--common-name", o->common_name, "the certificate's subject CN")
        ->capture_default_str()
        ->check(commonNameValidator());
    addLifetimeOption(cmd, *o, kDefaultIssuerLifetime, " (default: 1 year)");
    cmd->callback([o] { runCreateIssuer(*o); });
  }
  {
    auto o = std::make_shared<CreateOptions>();
    CLI::App* cmd = certs->add_subcommand(
        "create-webhook",
        "Create the serving certificate of the injector's admission webhook (serverAuth, with "
        "one DNS SAN per --dns), signed by --ca-cert, which becomes the webhook's caBundle.");
    addTargetOptions(cmd, *o, "webhook");
    addCaOptions(cmd, *o, "the webhook certificate");
    o->dns_names = {kDefaultWebhookName};
    cmd->add_option("--dns", o->dns_names,
                    "a DNS name of the webhook Service; repeat for several (the first is also "
                    "the CN)")
        ->capture_default_str()
        ->transform(dnsNameValidator());
    addLifetimeOption(cmd, *o, kDefaultWebhookLifetime, " (default: 1 year)");
    cmd->callback([o] { runCreateWebhook(*o); });
  }
  {
    auto o = std::make_shared<InspectOptions>();
    CLI::App* cmd = certs->add_subcommand(
        "inspect",
        "Show each certificate in the given PEM (or DER) files: subject, SANs, issuer, validity "
        "and time left, key and signature algorithms, CA or not, SHA-256 fingerprint. With "
        "--bundle, also check that each file's chain (first certificate as the leaf, the rest as "
        "intermediates) verifies against the roots in the bundle. Exits 1 when a file cannot be "
        "read, a certificate is expired or not yet valid, or a chain does not verify.");
    cmd->add_option("files", o->files, "certificate files (PEM or DER; - for stdin)")
        ->required()
        ->type_name("FILE...");
    cmd->add_option("--bundle", o->bundle,
                    "trust bundle (PEM) of root certificates to verify "
                    "against")
        ->type_name("ROOTS.pem");
    addOutputOption(cmd, o->output);
    cmd->callback([o] { runInspect(*o); });
  }
}

}  // namespace weft::cli
