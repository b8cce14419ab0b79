// What a person reads about a failure: the sentence, never a source location or a library's
// internals. boost::system::system_error::what() appends "[system:111 at
// /usr/include/boost/asio/...]"; its code's message is the sentence ("Connection refused").
#pragma once

#include <boost/system/system_error.hpp>

#include <exception>
#include <string>

namespace kv {

inline std::string describe(const std::exception& e) {
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) {
    return se->code().message();
  }
  return e.what();
}

}  // namespace kv
