#include "CVulkan.h"
int qtale_vulkan_placeholder(void) { return 0; }
