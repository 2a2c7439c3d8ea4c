// The TSV reader on the real ELUE files (byte-order marks included) and on every malformation
// it must name: ragged lines, invalid UTF-8, missing columns, empty files; CRLF is accepted.

#include <catch2/catch.hpp>

#include <hashee/core/error.hpp>
#include <hashee/io/tsv.hpp>

#include "test_support.hpp"

using namespace hashee;
using Catch::Matchers::Contains;

TEST_CASE("the real ELUE files load, byte-order marks and all", "[tsv]") {
    const auto dir = test::elue_dir();
    const auto mrpc = tsv_table::load(dir / "MRPC" / "dev.tsv"); // starts with a BOM
    CHECK(mrpc.header().front() == "Quality");
    CHECK(mrpc.size() == 408);
    CHECK(mrpc.column("#2 String") == 4);
    CHECK(mrpc.line(0) == 2);
    const auto sst = tsv_table::load(dir / "SST-2" / "dev.tsv");
    CHECK(sst.size() == 1101);
    CHECK(sst.row(0)[sst.column("sentence")] == "It 's a lovely film with lovely performances by Buy and Accorsi .");
    CHECK(tsv_table::load(dir / "SNLI" / "dev.tsv").size() == 9842);
}

TEST_CASE("CRLF line ends and a final line without a newline are accepted", "[tsv]") {
    const auto t = tsv_table::parse("a\tb\r\n1\t\"two\"\r\n3\t4", "mem");
    REQUIRE(t.size() == 2);
    CHECK(t.row(0) == std::vector<std::string>{"1", "\"two\""}); // quotes are text
    CHECK(t.row(1) == std::vector<std::string>{"3", "4"});
    CHECK(t.line(1) == 3);
}

TEST_CASE("malformed TSV gets a format_error naming the file and the line", "[tsv][errors]") {
    CHECK_THROWS_ID_AS(tsv_table::parse("a\tb\n1\t2\n3\n", "f.tsv"), hashee::error, "E18");
    CHECK_THROWS_MATCHES(tsv_table::parse("a\tb\n1\t2\n3\n", "f.tsv"), format_error,
                         Catch::Message("f.tsv:3: expected 2 tab-separated fields, found 1"));
    CHECK_THROWS_ID_AS(tsv_table::parse("a\tb\n1\t2\t3\n", "f.tsv"), hashee::error, "E18");
    CHECK_THROWS_WITH(tsv_table::parse("a\tb\n1\t2\t3\n", "f.tsv"), Contains("f.tsv:2") && Contains("found 3"));
    CHECK_THROWS_ID_AS(tsv_table::parse("a\tb\n1\t\xff\xfe\n", "f.tsv"), hashee::error, "E17");
    CHECK_THROWS_WITH(tsv_table::parse("a\tb\n1\t\xff\xfe\n", "f.tsv"), Contains("f.tsv:2: invalid UTF-8"));
    CHECK_THROWS_ID_AS(tsv_table::parse("", "f.tsv"), hashee::error, "E18");
    CHECK_THROWS_WITH(tsv_table::parse("", "f.tsv"), Contains("empty file"));
    CHECK_THROWS_ID_AS(tsv_table::parse("a\t\n", "f.tsv"), hashee::error, "E18");
    CHECK_THROWS_WITH(tsv_table::parse("a\t\n", "f.tsv"), Contains("empty column name"));
    CHECK_THROWS_ID_AS(tsv_table::parse("a\tb\n1\t2\n", "f.tsv").column("c"), hashee::error, "E18");
    CHECK_THROWS_WITH(tsv_table::parse("a\tb\n1\t2\n", "f.tsv").column("c"), Contains("no column 'c'") && Contains("'a', 'b'"));
    CHECK_THROWS_ID_AS(tsv_table::load("/nonexistent/x.tsv"), io_error, "E12");
    // Without a header: one or two fields a line.
    CHECK_THROWS_ID_AS(tsv_table::parse("x\ny\tz\tw\n", "in", false, 1, 2), hashee::error, "E18");
    CHECK_THROWS_WITH(tsv_table::parse("x\ny\tz\tw\n", "in", false, 1, 2), Contains("in:2: expected 1 to 2"));
    CHECK(tsv_table::parse("x\ny\tz\n", "in", false, 1, 2).size() == 2);
}
