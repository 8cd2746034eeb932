#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/statistics.h"

// One benchmark table, rendered from the same rows as aligned console text, as Markdown (the docs'
// tables) and as JSON (results files), so what a bench prints and what it writes cannot disagree.
namespace sine::eval {

class ReportTable {
 public:
  struct Cell {
    std::string text;      // as printed
    nlohmann::json value;  // as written
  };
  static Cell rate(const Rate& r);                    // "0.850 [0.794, 0.893]", {rate, low, high, n}
  static Cell number(double v, int precision = 3);    // "0.123", 0.123
  static Cell count(int64_t n);                       // "12", 12
  static Cell text(const std::string& s);             // as is

  // `columns` name the cells after the first column (the row's name, headed `first_column`).
  ReportTable(std::string first_column, std::vector<std::string> columns);
  void add(const std::string& row, std::vector<Cell> cells);  // one cell per column

  std::string console(int indent = 2) const;  // columns aligned with spaces
  std::string markdown() const;               // | name | ... |
  nlohmann::json json() const;                // {row: {column: value}}, rows in insertion order kept in "order"

  bool empty() const { return rows_.empty(); }

 private:
  std::string first_column_;
  std::vector<std::string> columns_;
  std::vector<std::pair<std::string, std::vector<Cell>>> rows_;
};

}  // namespace sine::eval
