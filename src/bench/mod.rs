pub mod cpu_conv;
