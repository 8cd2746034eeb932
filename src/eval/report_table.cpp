#include "eval/report_table.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace sine::eval {

ReportTable::Cell ReportTable::rate(const Rate& r) { return {format_rate(r), to_json(r)}; }

ReportTable::Cell ReportTable::number(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return {buf, v};
}

ReportTable::Cell ReportTable::count(int64_t n) { return {std::to_string(n), n}; }

ReportTable::Cell ReportTable::text(const std::string& s) { return {s, s}; }

ReportTable::ReportTable(std::string first_column, std::vector<std::string> columns)
    : first_column_(std::move(first_column)), columns_(std::move(columns)) {}

void ReportTable::add(const std::string& row, std::vector<Cell> cells) {
  if (cells.size() != columns_.size())
    throw Error("report table: row '" + row + "' has " + std::to_string(cells.size()) + " cells for " +
                std::to_string(columns_.size()) + " columns");
  rows_.emplace_back(row, std::move(cells));
}

std::string ReportTable::console(int indent) const {
  std::vector<size_t> width(columns_.size() + 1);
  width[0] = first_column_.size();
  for (size_t c = 0; c < columns_.size(); ++c) width[c + 1] = columns_[c].size();
  for (const auto& [name, cells] : rows_) {
    width[0] = std::max(width[0], name.size());
    for (size_t c = 0; c < cells.size(); ++c) width[c + 1] = std::max(width[c + 1], cells[c].text.size());
  }
  std::ostringstream s;
  auto line = [&](const std::string& first, const std::vector<std::string>& rest) {
    std::string text(static_cast<size_t>(indent), ' ');
    text += first + std::string(width[0] - first.size(), ' ');
    for (size_t c = 0; c < rest.size(); ++c) text += "  " + rest[c] + std::string(width[c + 1] - rest[c].size(), ' ');
    while (!text.empty() && text.back() == ' ') text.pop_back();
    s << text << "\n";
  };
  line(first_column_, columns_);
  for (const auto& [name, cells] : rows_) {
    std::vector<std::string> texts;
    for (const Cell& cell : cells) texts.push_back(cell.text);
    line(name, texts);
  }
  return s.str();
}

std::string ReportTable::markdown() const {
  std::ostringstream s;
  s << "| " << first_column_ << " |";
  for (const auto& c : columns_) s << " " << c << " |";
  s << "\n|---|";
  for (size_t c = 0; c < columns_.size(); ++c) s << "---|";
  s << "\n";
  for (const auto& [name, cells] : rows_) {
    s << "| " << name << " |";
    for (const Cell& cell : cells) s << " " << cell.text << " |";
    s << "\n";
  }
  return s.str();
}

nlohmann::json ReportTable::json() const {
  nlohmann::json rows = nlohmann::json::object(), order = nlohmann::json::array();
  for (const auto& [name, cells] : rows_) {
    nlohmann::json row = nlohmann::json::object();
    for (size_t c = 0; c < cells.size(); ++c) row[columns_[c]] = cells[c].value;
    rows[name] = row;
    order.push_back(name);
  }
  return {{"rows", rows}, {"order", order}};
}

}  // namespace sine::eval
