#include "weft/tls/context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace weft::tls {
namespace {

thread_local TlsSnapshotPtr t_current;

// ALPN wire format: length-prefixed protocol names.
std::string alpnWire() {
  std::string out;
  out += static_cast<char>(kAlpnTransport.size());
  out += kAlpnTransport;
  return out;
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const std::string wire = alpnWire();
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // a peer that speaks none of ours is not a Weft proxy
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

Status configure(SSL_CTX* ctx, const Credentials& creds) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Tickets and resumption stay off: every connection proves a current certificate. In TLS 1.3
  // SSL_OP_NO_TICKET alone still sends (stateful) tickets; num_tickets 0 stops them, which
  // measured 7 % less CPU per handshake (bench/README.md).
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Read several records per recv() on bulk transfers, and give the buffers back when idle so
  // an idle mesh connection holds no TLS buffers.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate(ctx, creds.leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, creds.key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return Error::internal("tls_config", "leaf and key: " + identity::opensslError());
  }
  for (const auto& c : creds.intermediates) {
    if (SSL_CTX_add1_chain_cert(ctx, c.get()) != 1) {
      return Error::internal("tls_config", "chain: " + identity::opensslError());
    }
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const auto& r : creds.roots) {
    if (X509_STORE_add_cert(store, r.get()) != 1) {
      return Error::internal("tls_config", "trust bundle: " + identity::opensslError());
    }
  }
  return okStatus();
}

}  // namespace

Result<std::shared_ptr<const TlsSnapshot>> TlsSnapshot::build(const Credentials& creds) {
  if (!creds.key || !creds.leaf || creds.roots.empty()) {
    return Error::internal("tls_config", "a key, a leaf and at least one trust anchor are needed");
  }
  std::shared_ptr<TlsSnapshot> snap(new TlsSnapshot());
  snap->identity_ = creds.identity;
  snap->not_after_ = identity::describe(creds.leaf.get()).not_after;
  snap->server_.reset(SSL_CTX_new(TLS_server_method()));
  snap->client_.reset(SSL_CTX_new(TLS_client_method()));
  if (!snap->server_ || !snap->client_) {
    return Error::internal("tls_config", identity::opensslError());
  }
  for (auto* ctx : {snap->server_.get(), snap->client_.get()}) {
    if (auto st = configure(ctx, creds); !st) return st.error();
  }
  SSL_CTX* server = snap->server_.get();
  SSL_CTX_set_verify(server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_alpn_select_cb(server, selectAlpn, nullptr);
  SSL_CTX* client = snap->client_.get();
  SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nullptr);
  const std::string wire = alpnWire();
  SSL_CTX_set_alpn_protos(client, reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
  return std::shared_ptr<const TlsSnapshot>(std::move(snap));
}

const TlsSnapshotPtr& currentSnapshot() { return t_current; }
void setCurrentSnapshot(TlsSnapshotPtr snapshot) { t_current = std::move(snapshot); }

std::string peerIdentity(SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return {};
  // Only the first DNS SAN: this runs on every inbound mesh connection.
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return {};
  std::string out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = n->d.dNSName;
      out.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                 static_cast<std::size_t>(ASN1_STRING_length(dns)));
      break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string handshakeFailureReason(SSL* ssl) {
  long v = SSL_get_verify_result(ssl);
  switch (v) {
    case X509_V_OK:
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "not_yet_valid";
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "wrong_identity";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "unknown_ca";
    default:
      return "bad_certificate";
  }
  // Verification passed or never ran: on the server side, a client that sent no certificate.
  if (SSL_is_server(ssl) && SSL_get0_peer_certificate(ssl) == nullptr) return "no_client_cert";
  return "handshake";
}

}  // namespace weft::tls
