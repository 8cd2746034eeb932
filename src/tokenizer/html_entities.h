#pragma once
#include <functional>
#include <string>

namespace sine {

// `name` without the leading '&' (e.g. U"amp;" or the legacy U"amp"); nullptr if unknown.
const std::u32string* html5_named_reference(const std::u32string& name);
void for_each_html5_named_reference(
    const std::function<void(const std::u32string& name, const std::u32string& value)>& visit);

}  // namespace sine
