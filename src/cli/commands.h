#pragma once

namespace sine {

// Parses the command line, runs the command, and turns a sine::Error into one line on stderr
// and a non-zero exit code.
int cli_main(int argc, char** argv);

}  // namespace sine
