// Placeholder: replaced by the Vulkan function table and loader.
int qtale_vulkan_placeholder(void);
