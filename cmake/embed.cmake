# embed.cmake - turns a Lua source into a C array: cmake -DIN=x.lua -DOUT=x.h -DNAME=sym -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}" "/* generated from ${IN}; do not edit */\nstatic const unsigned char ${NAME}[] = {${body}};\n")
