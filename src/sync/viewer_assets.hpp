// The viewer page (src/sync/viewer/), compiled into kvsync by cmake/embed.cmake.
#pragma once

#include <optional>
#include <string_view>

namespace kv::sync {

struct ViewerAsset {
  std::string_view content_type;
  std::string_view content;
};

// "/" or "/index.html", "/viewer.js", "/viewer.css"; nullopt for anything else.
std::optional<ViewerAsset> viewer_asset(std::string_view path);

}  // namespace kv::sync
