#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/verify_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fstream>
#include <stdexcept>

namespace kv::tls {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

namespace {

// Values of our category: below kSpeaksTls, an X509_V_ERR_* verification result; kSpeaksTls and
// kClosed, themselves; anything else, an OpenSSL error code from Asio's SSL category.
constexpr int kSpeaksTls = 1000;
constexpr int kClosed = 1001;

class Category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "kv.tls"; }
  std::string message(int v) const override {
    if (v == kSpeaksTls) {
      return "the node speaks TLS: connect with --tls-ca FILE (the CA that signed its "
             "certificate)";
    }
    if (v == kClosed) {
      return "the node closed the connection during the TLS handshake (does it serve TLS, "
             "with --tls-cert?)";
    }
    if (v > 0 && v < kSpeaksTls) {
      std::string m = "the node's certificate was not accepted: ";
      m += X509_verify_cert_error_string(v);
      if (v == X509_V_ERR_IP_ADDRESS_MISMATCH || v == X509_V_ERR_HOSTNAME_MISMATCH) {
        m += " (its subjectAltName must name the address you connect to)";
      } else {
        m += " (--tls-ca must name the CA that signed it)";
      }
      return m;
    }
    return "TLS handshake failed: " + asio::error::get_ssl_category().message(v) +
           " (does the node serve TLS, with --tls-cert?)";
  }
};

const Category& category() {
  static const Category c;
  return c;
}

void need_file(const char* flag, const std::string& file) {
  std::ifstream f(file);
  if (!f) {
    throw std::invalid_argument(std::string(flag) + ": cannot read '" + file + "'");
  }
}

// TLS 1.2 and later only; no compression, no renegotiation.
void harden(ssl::context& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::no_compression);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_RENEGOTIATION);
}

bool is_address(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::shared_ptr<Context> server_context(const std::string& cert_file, const std::string& key_file) {
  need_file("--tls-cert", cert_file);
  need_file("--tls-key", key_file);
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  harden(*ctx);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    throw std::invalid_argument("--tls-cert: '" + cert_file +
                                "' holds no usable PEM certificate chain: " + ec.message());
  }
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec && ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
    throw std::invalid_argument("--tls-key: the key in '" + key_file +
                                "' does not belong to the certificate in '" + cert_file + "'");
  }
  if (ec) {
    throw std::invalid_argument("--tls-key: '" + key_file +
                                "' holds no usable PEM private key: " + ec.message());
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw std::invalid_argument("--tls-key: the key in '" + key_file +
                                "' does not belong to the certificate in '" + cert_file + "'");
  }
  return ctx;
}

std::shared_ptr<Context> client_context(const std::string& ca_file) {
  need_file("--tls-ca", ca_file);
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  harden(*ctx);
  boost::system::error_code ec;
  ctx->load_verify_file(ca_file, ec);
  if (ec) {
    throw std::invalid_argument("--tls-ca: '" + ca_file +
                                "' holds no usable PEM CA certificate: " + ec.message());
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

std::shared_ptr<Context> server_from_flags(const std::string& cert_file,
                                           const std::string& key_file) {
  if (cert_file.empty() && key_file.empty()) return nullptr;
  if (cert_file.empty() || key_file.empty()) {
    throw std::invalid_argument(
        "--tls-cert and --tls-key go together: the certificate chain and its private key");
  }
  return server_context(cert_file, key_file);
}

void set_server_name(ssl_st* ssl, const std::string& host) {
  // SNI carries names only (RFC 6066); an address is verified but not sent.
  if (!is_address(host)) SSL_set_tlsext_host_name(ssl, host.c_str());
}

std::function<bool(bool, ssl::verify_context&)> verify_host(std::string host) {
  const bool address = is_address(host);
  return [check = ssl::host_name_verification(std::move(host)), address](bool preverified,
                                                                         ssl::verify_context& ctx) {
    const bool ok = check(preverified, ctx);
    if (preverified && !ok) {
      // Say why, for handshake_error(): the chain was fine, the name was not.
      X509_STORE_CTX_set_error(ctx.native_handle(), address ? X509_V_ERR_IP_ADDRESS_MISMATCH
                                                            : X509_V_ERR_HOSTNAME_MISMATCH);
    }
    return ok;
  };
}

boost::system::error_code handshake_error(ssl_st* ssl, boost::system::error_code ec) {
  if (!ec || ec == asio::error::operation_aborted || ec == asio::error::timed_out) return ec;
  if (ssl) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK && verify > 0 && verify < kSpeaksTls) {
      return {static_cast<int>(verify), category()};
    }
  }
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated ||
      ec == asio::error::connection_reset) {
    return {kClosed, category()};
  }
  if (ec.category() == asio::error::get_ssl_category() && ec.value() >= kSpeaksTls) {
    return {ec.value(), category()};
  }
  return ec;
}

boost::system::error_code server_speaks_tls() {
  return {kSpeaksTls, category()};
}

bool is_tls_error(const boost::system::error_code& ec) {
  return ec.category() == category();
}

namespace {
asio::awaitable<bool> plain_client(asio::ip::tcp::socket& socket,
                                   std::chrono::steady_clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto ready = co_await (socket.async_wait(asio::ip::tcp::socket::wait_read, kTuple) ||
                         timer.async_wait(kTuple));
  if (ready.index() == 1 || std::get<0>(std::get<0>(ready))) co_return false;
  unsigned char first = 0;
  boost::system::error_code ec;
  const std::size_t n = socket.receive(asio::buffer(&first, 1), socket.message_peek, ec);
  // Every TLS connection opens with a handshake record (content type 22).
  co_return !ec && n == 1 && first != 22;
}

asio::awaitable<void> refuse_plain(asio::ip::tcp::socket& socket, std::string_view answer,
                                   std::chrono::steady_clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto wrote = co_await (asio::async_write(socket, asio::buffer(answer), kTuple) ||
                         timer.async_wait(kTuple));
  if (wrote.index() == 1 || std::get<0>(std::get<0>(wrote))) co_return;
  boost::system::error_code ignored;
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  char sink[4096];
  for (std::size_t total = 0; total < 64 * 1024;) {
    auto r =
        co_await (socket.async_read_some(asio::buffer(sink), kTuple) || timer.async_wait(kTuple));
    if (r.index() == 1) co_return;
    auto [ec, n] = std::get<0>(r);
    if (ec) co_return;
    total += n;
  }
}

}  // namespace

asio::awaitable<bool> turn_away_plain(asio::ip::tcp::socket& socket, std::string_view answer,
                                      std::chrono::steady_clock::time_point deadline) {
  // (A statement of its own: GCC 12 miscompiles a co_await inside an if condition here.)
  const bool plain = co_await plain_client(socket, deadline);
  if (!plain) co_return false;
  co_await refuse_plain(socket, answer, deadline);
  co_return true;
}

bool looks_like_tls(const unsigned char* bytes, std::size_t size) {
  // A record header: content type alert (21) or handshake (22), then version major 3.
  return size >= 2 && (bytes[0] == 21 || bytes[0] == 22) && bytes[1] == 3;
}

}  // namespace kv::tls
