// Boost.JSON compiled into the fuzz targets (header-only mode), so that they do not link the
// GCC-built libboost_json.
#include <boost/json/src.hpp>
