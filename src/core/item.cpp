#include "core/item.hpp"

#include <charconv>
#include <ostream>

namespace kv {

std::string make_item_id(std::uint64_t number, std::string_view node_name) {
  return std::to_string(number) + std::string(node_name);
}

std::optional<std::uint64_t> item_id_number(std::string_view id) {
  if (id.size() > 1 && id[0] == '0') return std::nullopt;  // one spelling per id: no "03a"
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
  if (ec != std::errc{} || end == id.data()) return std::nullopt;
  if (!valid_node_name(std::string_view(end, id.data() + id.size() - end))) return std::nullopt;
  return n;
}

std::ostream& operator<<(std::ostream& os, const Item& item) {
  os << "ID:" << item.id << ", Version:" << item.version << " " << item.title << ", "
     << (item.deleted     ? "deleted"
         : item.completed ? "completed"
                          : "no-complete");
  return os;
}

std::uint64_t item_digest(const Item& item) {
  return item_digest(item.id, item.title, item.completed, item.version);
}

std::uint64_t item_digest(std::string_view id, std::string_view title, bool completed,
                          std::uint64_t version) {
  // FNV-1a over the fields, each one delimited, then a final mix so that sums of hashes of
  // similar items do not cancel out in patterns.
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto eat = [&h](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;
    h *= 0x100000001b3ull;
  };
  eat(id);
  eat(title);
  char tail[9];
  tail[0] = completed ? 1 : 0;
  for (int i = 0; i < 8; ++i) tail[1 + i] = static_cast<char>((version >> (8 * i)) & 0xff);
  eat(std::string_view(tail, sizeof tail));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

bool valid_node_name(std::string_view name) {
  if (name.empty() || name.size() > 8) return false;
  for (char c : name) {
    if (c < 'a' || c > 'z') return false;
  }
  return true;
}

bool item_id_less(std::string_view a, std::string_view b) {
  // Numbers have no leading zeros, so a shorter digit run is a smaller number and equal-length
  // runs compare as text: no parsing (this is the node's map comparator). Any string has one
  // place in this order, ids of the documented shape by number, then node name.
  const auto digits = [](std::string_view s) {
    std::size_t n = 0;
    while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
    return n;
  };
  const std::size_t da = digits(a), db = digits(b);
  if (da != db) return da < db;
  if (const int c = a.substr(0, da).compare(b.substr(0, db)); c != 0) return c < 0;
  return a.substr(da) < b.substr(db);
}

}  // namespace kv
