// The errors a server returns, in OpenAI's shape -- what every OpenAI client parses:
//
//   HTTP <status>
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "messages" | null,
//              "code": "..." | null}}
//
// An ApiError is thrown by the request parsers (serve/*_request.hpp) and the handlers, caught once
// per request by the HTTP layer and written with error_body(). `param` names the request field at
// fault with its path ("messages[2].content[0].type"), so a client learns which field to fix.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace sgt::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, std::string message,
           std::optional<std::string> param = std::nullopt,
           std::optional<std::string> code = std::nullopt)
      : std::runtime_error(message),
        status_(status),
        type_(std::move(type)),
        message_(std::move(message)),
        param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const noexcept { return status_; }
  const std::string& type() const noexcept { return type_; }
  const std::string& message() const noexcept { return message_; }
  const std::optional<std::string>& param() const noexcept { return param_; }
  const std::optional<std::string>& code() const noexcept { return code_; }

 private:
  int status_;
  std::string type_, message_;
  std::optional<std::string> param_, code_;
};

// 400: a field is missing, of the wrong type or out of range, or asks for what we cannot honour.
inline ApiError invalid_request(const std::string& param, const std::string& message,
                                const char* code = nullptr) {
  return ApiError(400, "invalid_request_error", message, param,
                  code ? std::optional<std::string>(code) : std::nullopt);
}

// 400: a field we parse but cannot honour faithfully (n > 1, logprobs, image parts, ...).
inline ApiError unsupported_field(const std::string& param, const std::string& why) {
  return ApiError(400, "invalid_request_error", param + " is not supported: " + why, param,
                  "unsupported_parameter");
}

inline nlohmann::ordered_json error_json(const ApiError& e) {
  using json = nlohmann::ordered_json;
  json error;
  error["message"] = e.message();
  error["type"] = e.type();
  error["param"] = e.param() ? json(*e.param()) : json(nullptr);
  error["code"] = e.code() ? json(*e.code()) : json(nullptr);
  return json{{"error", error}};
}

// The body of an error response (one line). Messages quote request fields only by name, never
// by value, so an error body or log line never carries a prompt.
inline std::string error_body(const ApiError& e) {
  return error_json(e).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// The common statuses, each one wording.
inline ApiError unauthorized() {
  return ApiError(401, "authentication_error", "missing or invalid API key (Authorization: Bearer)",
                  std::nullopt, "invalid_api_key");
}
inline ApiError body_too_large(std::size_t limit) {
  return ApiError(413, "invalid_request_error",
                  "the request body is larger than the limit of " + std::to_string(limit) +
                      " bytes (--max-body-bytes)",
                  std::nullopt, "request_too_large");
}
inline ApiError request_timeout(double seconds) {
  return ApiError(408, "invalid_request_error",
                  "the request did not arrive within " + std::to_string(int(seconds)) +
                      " s of its first byte (--request-read-timeout)",
                  std::nullopt, "request_timeout");
}
inline ApiError body_incomplete() {
  return ApiError(400, "invalid_request_error", "the request body ended before its length",
                  std::nullopt, "incomplete_body");
}
inline ApiError server_busy(std::size_t max_concurrent) {
  return ApiError(429, "rate_limit_error",
                  "the server is busy: " + std::to_string(max_concurrent) +
                      " requests are in flight (--max-concurrent); retry later",
                  std::nullopt, "server_busy");
}
inline ApiError upstream_unreachable(const std::string& why) {
  return ApiError(502, "upstream_error", "the upstream server failed: " + why, std::nullopt,
                  "upstream_error");
}
inline ApiError upstream_timeout(double seconds) {
  return ApiError(504, "upstream_error",
                  "the upstream server sent nothing for " + std::to_string(int(seconds)) +
                      " s (--upstream-timeout)",
                  std::nullopt, "upstream_timeout");
}
inline ApiError not_found(const std::string& path_kind) {
  return ApiError(404, "invalid_request_error", "no such endpoint: " + path_kind, std::nullopt,
                  "not_found");
}
inline ApiError shutting_down() {
  return ApiError(503, "server_error", "the server is shutting down", std::nullopt,
                  "shutting_down");
}
inline ApiError internal_error(const std::string& message) {
  return ApiError(500, "server_error", message, std::nullopt, "internal_error");
}

}  // namespace sgt::serve
