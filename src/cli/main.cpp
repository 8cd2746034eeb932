#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) { return sine::cli_main(argc, argv); }
