#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/report_table.h"

using namespace sine::eval;

TEST(ReportTable, ConsoleMarkdownAndJsonFromTheSameRows) {
  ReportTable t("model", {"duplicated", "n"});
  t.add("patch (grid)", {ReportTable::rate(wilson(3, 48)), ReportTable::count(48)});
  t.add("whole", {ReportTable::rate(wilson(40, 48)), ReportTable::count(48)});
  EXPECT_EQ(t.console(0),
            "model         duplicated            n\n"
            "patch (grid)  0.062 [0.021, 0.168]  48\n"
            "whole         0.833 [0.704, 0.913]  48\n");
  EXPECT_EQ(t.markdown(),
            "| model | duplicated | n |\n|---|---|---|\n"
            "| patch (grid) | 0.062 [0.021, 0.168] | 48 |\n| whole | 0.833 [0.704, 0.913] | 48 |\n");
  const nlohmann::json j = t.json();
  EXPECT_EQ(j["order"], (nlohmann::json{"patch (grid)", "whole"}));
  EXPECT_NEAR(j["rows"]["whole"]["duplicated"]["rate"].get<double>(), 40.0 / 48.0, 1e-12);
  EXPECT_NEAR(j["rows"]["whole"]["duplicated"]["low"].get<double>(), wilson(40, 48).low, 1e-12);
  EXPECT_EQ(j["rows"]["patch (grid)"]["n"], 48);
  EXPECT_THROW(t.add("short", {ReportTable::count(1)}), sine::Error);
}
