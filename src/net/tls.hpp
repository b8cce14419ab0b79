// TLS for every connection of the cluster (docs/security.md, "TLS"): the contexts servers and
// clients use, built from PEM files, and sentences for what can go wrong in a handshake. This
// header is light on purpose: Asio's SSL headers stay in the .cpp files that make streams.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

struct ssl_st;  // OpenSSL's SSL

namespace boost::asio::ssl {
class context;
class verify_context;
}  // namespace boost::asio::ssl

namespace kv::tls {

using Context = boost::asio::ssl::context;

// A server's context: the certificate chain in `cert_file` (PEM, the server's certificate
// first) and its private key in `key_file`; TLS 1.2 or later, no compression, no
// renegotiation. Throws std::invalid_argument with a sentence naming the file at fault.
std::shared_ptr<Context> server_context(const std::string& cert_file, const std::string& key_file);

// A client's context: trusts the CA certificates in `ca_file` (PEM) and nothing else, and
// verifies the server's certificate; TLS 1.2 or later. Throws std::invalid_argument.
std::shared_ptr<Context> client_context(const std::string& ca_file);

// The server flags of kvnode and kvsync: both or neither; returns the context, or nullptr
// when neither is given. Throws std::invalid_argument with a sentence.
std::shared_ptr<Context> server_from_flags(const std::string& cert_file,
                                           const std::string& key_file);

// Prepares a client connection to `host` (as the user wrote it: a name or an IP address):
// SNI for a name, and the verifier to hand to the stream's set_verify_callback(), which
// checks, besides the chain, that the certificate names `host` (DNS or IP subjectAltName).
void set_server_name(ssl_st* ssl, const std::string& host);
std::function<bool(bool, boost::asio::ssl::verify_context&)> verify_host(std::string host);

// What a failed client handshake on `ssl` means, as an error code whose message() is a
// sentence (an untrusted certificate says why; an eof says the server may not speak TLS).
// Codes that say nothing about TLS (timed_out, connection_refused) come back unchanged.
boost::system::error_code handshake_error(ssl_st* ssl, boost::system::error_code ec);

// Returned by a plain client whose server answered with a TLS record: it should connect
// with --tls-ca.
boost::system::error_code server_speaks_tls();
// Whether `ec` is one of ours (a sentence about TLS), rather than a plain network error.
bool is_tls_error(const boost::system::error_code& ec);

// For a TLS server, before its handshake: waits until `deadline` for the client's first byte,
// without consuming it. When that byte cannot start a TLS handshake (a client speaking the plain
// binary protocol or plain HTTP), sends it `answer`, in words it understands, ends the
// connection gracefully (our side shut down, what the client still sends read and dropped until
// it closes or `deadline`, so the answer is not lost to a reset) and returns true. False when
// the byte can start a handshake, or when nothing came in time (the handshake then fails).
boost::asio::awaitable<bool> turn_away_plain(boost::asio::ip::tcp::socket& socket,
                                             std::string_view answer,
                                             std::chrono::steady_clock::time_point deadline);

// A TLS alert record (fatal, protocol_version): what a plain binary-protocol client gets from a
// TLS port before it is closed; NodeClient reports it as server_speaks_tls().
inline constexpr std::string_view kAlertRecord{"\x15\x03\x03\x00\x02\x02\x46", 7};

// Whether `bytes` (what a plain-protocol peer sent first) look like the start of a TLS record.
bool looks_like_tls(const unsigned char* bytes, std::size_t size);

}  // namespace kv::tls
