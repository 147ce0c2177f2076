// The target's only function is inline in include/CMemoryHints.h; SwiftPM needs a source file to build it.
#include "CMemoryHints.h"
