#include "common/item.hpp"

#include <charconv>
#include <ostream>

namespace kv {

std::string make_item_id(std::uint64_t number, std::string_view node_name) {
  return std::to_string(number) + std::string(node_name);
}

std::optional<std::uint64_t> item_id_number(std::string_view id) {
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

bool valid_node_name(std::string_view name) {
  if (name.empty() || name.size() > 8) return false;
  for (char c : name) {
    if (c < 'a' || c > 'z') return false;
  }
  return true;
}

bool item_id_less(std::string_view a, std::string_view b) {
  const auto na = item_id_number(a);
  const auto nb = item_id_number(b);
  if (na && nb && *na != *nb) return *na < *nb;
  if (na.has_value() != nb.has_value()) return na.has_value();
  return a < b;
}

}  // namespace kv
